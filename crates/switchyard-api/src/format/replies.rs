//! Fixed replies of the commands that change state (`add/del server`, `set server`,
//! `set weight`) and their errors, exactly as HAProxy 2.6 words them.
//!
//! As everywhere in [`crate::format`], these are bodies: the CLI appends its own `"\n"`.
//! Some HAProxy messages carry a newline of their own (`"No such server.\n"` of `get weight`)
//! and some do not (`"No such server."` of `del server`), so a client sees a blank line after
//! the former and not after the latter. Both spellings are kept apart here.

/// `add server` succeeded.
pub const ADD_SERVER_OK: &str = "New server registered.\n";
/// `add server` with a name already used in the backend.
pub const ADD_SERVER_EXISTS: &str = "Already exists a server with the same name in backend.\n";
/// `add server` / `del server` naming an unknown backend.
pub const ADD_DEL_NO_SUCH_BACKEND: &str = "No such backend.";
/// `del server` naming an unknown server.
pub const DEL_NO_SUCH_SERVER: &str = "No such server.";
/// `del server` succeeded.
pub const DEL_SERVER_OK: &str = "Server deleted.";
/// `del server` on a server not in maintenance.
pub const DEL_SERVER_NOT_MAINT: &str = "Only servers in maintenance mode can be deleted.";
/// `del server` on a server with sessions, queued or idle connections.
pub const DEL_SERVER_HAS_CONNS: &str =
    "Server still has connections attached to it, cannot remove it.";

/// `get weight` / `set weight` / `set server` naming an unknown backend.
pub const NO_SUCH_BACKEND: &str = "No such backend.\n";
/// `get weight` / `set weight` / `set server` naming an unknown server.
pub const NO_SUCH_SERVER: &str = "No such server.\n";
/// `get weight` / `set weight` without a `/`.
pub const REQUIRE_BACKEND_SERVER: &str = "Require 'backend/server'.\n";
/// `set weight` with a value that is not a number.
pub const SET_WEIGHT_INVALID: &str = "Empty weight string empty or preceded by garbage";
/// `show stat <proxy>` naming an unknown proxy.
pub const NO_SUCH_PROXY: &str = "No such proxy.\n";
/// `show servers state|conn <backend>` naming an unknown backend.
pub const CANT_FIND_BACKEND: &str = "Can't find backend.\n";
/// Successful `set weight`, `set server ... state|weight`, `enable/disable server`: nothing.
pub const OK_EMPTY: &str = "";

/// Who changed an address, as `set server ... addr` reports it.
pub const UPDATER_CLI: &str = "stats socket command";

/// The reply of `set server <b>/<s> addr <ip> [port <port>]` (HAProxy's
/// `srv_update_addr_port` message). `port` is `Some((old, new))` when a port was given.
pub fn set_server_addr(old_ip: &str, new_ip: &str, port: Option<(u16, u16)>) -> String {
    let mut msg = if old_ip == new_ip {
        "no need to change the addr".to_string()
    } else {
        format!("IP changed from '{old_ip}' to '{new_ip}'")
    };
    if let Some((old, new)) = port {
        if old == new {
            msg.push_str(", no need to change the port");
        } else {
            msg.push_str(&format!(", port changed from '{old}' to '{new}'"));
        }
    }
    msg.push_str(&format!(" by '{UPDATER_CLI}'\n"));
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_messages() {
        assert_eq!(
            set_server_addr("127.0.0.1", "127.0.0.2", Some((15000, 15001))),
            "IP changed from '127.0.0.1' to '127.0.0.2', port changed from '15000' to '15001' by 'stats socket command'\n"
        );
        assert_eq!(
            set_server_addr("127.0.0.2", "127.0.0.2", None),
            "no need to change the addr by 'stats socket command'\n"
        );
        assert_eq!(
            set_server_addr("127.0.0.3", "127.0.0.3", Some((15001, 15001))),
            "no need to change the addr, no need to change the port by 'stats socket command'\n"
        );
    }
}
