//! The Runtime API operators drive with `socat`/`nc` and scripts: HAProxy's command grammar
//! ([`command`]), the stats socket server with levels and prompt mode ([`server`]), and output
//! formats that reproduce HAProxy's byte for byte ([`format`], over the plain data in
//! [`model`]).

pub mod command;
pub mod format;
pub mod model;
pub mod server;
