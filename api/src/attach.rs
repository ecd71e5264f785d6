//! The attach protocol of one-off dynos (`GET /apps/{app}/dynos/{id}/attach`, a
//! WebSocket): every binary message starts with one of these kind bytes.

/// Client → dyno: bytes for its stdin.
pub const STDIN: u8 = 0;
/// Dyno → client: bytes it wrote to stdout.
pub const STDOUT: u8 = 1;
/// Dyno → client: bytes it wrote to stderr (and the platform's own errors).
pub const STDERR: u8 = 2;
/// Dyno → client: the exit code, i32 big-endian. The last frame.
pub const EXIT: u8 = 3;
/// Client → dyno: stdin is closed.
pub const STDIN_EOF: u8 = 4;
