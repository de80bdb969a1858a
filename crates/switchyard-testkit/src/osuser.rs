//! OS users the throw-away database servers run as when the tests run as root.

use std::collections::HashMap;
use std::ffi::CString;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{anyhow, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OsUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

pub(crate) fn lookup_user(name: &str) -> Option<OsUser> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: getpwnam_r with a zeroed passwd struct and a buffer we own.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        (rc == 0 && !result.is_null()).then_some(OsUser {
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        })
    }
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The OS user a server runs as: None (the current user) unless we are root, then `name`,
/// created as a system user (home `home`, not created) if it does not exist.
pub(crate) fn server_user(name: &str, home: &str) -> Result<Option<OsUser>> {
    type Lookup = Result<Option<OsUser>, String>;
    static USERS: Mutex<Option<HashMap<String, Lookup>>> = Mutex::new(None);
    let mut users = USERS.lock().unwrap_or_else(|p| p.into_inner());
    users
        .get_or_insert_with(HashMap::new)
        .entry(name.to_string())
        .or_insert_with(|| {
            if !is_root() {
                return Ok(None);
            }
            if let Some(user) = lookup_user(name) {
                return Ok(Some(user));
            }
            let out = Command::new("useradd")
                .args([
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--home-dir",
                    home,
                ])
                .args(["--shell", "/usr/sbin/nologin", name])
                .output();
            // Another process may have created it meanwhile; look again either way.
            lookup_user(name).map(Some).ok_or_else(|| {
                format!("running as root and there is no `{name}` OS user; useradd failed: {out:?}")
            })
        })
        .clone()
        .map_err(|e| anyhow!(e))
}
