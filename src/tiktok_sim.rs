//! The TikTok API simulator (placeholder until it lands).
