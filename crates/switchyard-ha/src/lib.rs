//! High availability of the balancer itself: a VRRPv3 (RFC 5798) speaker that moves
//! virtual IPv4 addresses between Switchyard nodes — or between Switchyard and keepalived.
//!
//! - [`packet`]: advertisements on the wire (encode, decode, checksum with the pseudo-header).
//! - [`machine`]: the RFC's state machine as a pure type driven by explicit time.

pub mod io;
pub mod machine;
pub mod packet;
pub mod speaker;

pub use speaker::{run, Instance, NotifyScripts, Tracking};
