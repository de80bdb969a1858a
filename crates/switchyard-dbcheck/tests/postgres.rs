//! Database-role checks against real PostgreSQL servers (the testkit's throw-away instances):
//! role detection, SCRAM/md5 authentication, streaming-replication standbys and their lag.

use std::time::{Duration, Instant};

use switchyard_config::{DatabaseCheck, DatabaseEngine, DatabaseRole, Secret};
use switchyard_dbcheck::{check, DbError, DbVerdict, ObservedRole};
use switchyard_testkit::{require_postgres_or_return, PgInstance, TempDir};

const TIMEOUT: Duration = Duration::from_secs(10);
/// Distinctive, so a leak into any message is caught.
const PASSWORD: &str = "Sw1tchy4rd-s3cret-XQZ";
const WRONG: &str = "Wr0ng-guess-KJH";

fn spec(user: &str, password: Option<Secret>, role: DatabaseRole) -> DatabaseCheck {
    DatabaseCheck {
        engine: DatabaseEngine::Postgres,
        user: user.into(),
        password,
        database: None,
        role,
        max_lag: None,
        allow_donor: false,
    }
}

async fn verdict(spec: &DatabaseCheck, pg: &PgInstance) -> DbVerdict {
    match check(spec, pg.addr(), TIMEOUT).await {
        Ok(v) => v,
        Err(e) => panic!("check of {spec:?} failed: {e:?}\nlog:\n{}", pg.log()),
    }
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(PASSWORD), "password leaked: {text}");
    assert!(!text.contains(WRONG), "password leaked: {text}");
}

/// Every check said goodbye: no client connection left behind on the server.
fn assert_no_leftover_connections(pg: &PgInstance) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = pg.client_connections().expect("count connections");
        if n == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{n} check connections left open");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = pg.log();
    assert!(!log.contains("unexpected EOF"), "{log}");
    assert!(!log.contains("could not receive data from client"), "{log}");
}

#[tokio::test]
async fn primary_roles_and_authentication() {
    require_postgres_or_return!();
    let pg = PgInstance::start().expect("start PostgreSQL");

    // Trust authentication, no password: role detection.
    for role in [DatabaseRole::Primary, DatabaseRole::Any] {
        let v = verdict(&spec("postgres", None, role), &pg).await;
        assert!(v.up, "{v:?}");
        assert_eq!(v.info, "primary");
        assert_eq!(v.role, Some(ObservedRole::Primary));
        assert_eq!(v.lag, None);
    }
    let v = verdict(&spec("postgres", None, DatabaseRole::Standby), &pg).await;
    assert!(!v.up, "{v:?}");
    assert_eq!(v.info, "primary (not in recovery), standby required");
    assert_eq!(v.role, Some(ObservedRole::Primary));

    // A role with a SCRAM verifier, and one with an md5 hash; pg_hba requires a password for
    // them on 127.0.0.1 (first matching line wins), everyone else stays trusted.
    pg.psql(
        None,
        "ALTER SYSTEM SET password_encryption = 'scram-sha-256'",
    )
    .unwrap();
    pg.psql(None, "SELECT pg_reload_conf()").unwrap();
    pg.psql(
        None,
        &format!("SET password_encryption = 'scram-sha-256'; CREATE ROLE checker LOGIN PASSWORD '{PASSWORD}'"),
    )
    .unwrap();
    pg.psql(
        None,
        &format!(
            "SET password_encryption = 'md5'; CREATE ROLE md5checker LOGIN PASSWORD '{PASSWORD}'"
        ),
    )
    .unwrap();
    assert!(pg
        .psql(
            None,
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'checker'"
        )
        .unwrap()
        .starts_with("SCRAM-SHA-256$"));
    let hba = pg.data_dir().join("pg_hba.conf");
    let original = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    std::fs::write(
        &hba,
        format!(
            "host all checker 127.0.0.1/32 scram-sha-256\n\
             host all md5checker 127.0.0.1/32 md5\n{original}"
        ),
    )
    .expect("write pg_hba.conf");
    pg.psql(None, "SELECT pg_reload_conf()").unwrap();

    // SCRAM with the password inline, from a file (trailing newline ignored), from a variable.
    let dir = TempDir::new("switchyard-dbcheck").unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let var = "SWITCHYARD_DBCHECK_TEST_PG_PASSWORD";
    std::env::set_var(var, PASSWORD);
    for secret in [
        Secret::Inline(PASSWORD.into()),
        Secret::File(file.clone()),
        Secret::Env(var.into()),
    ] {
        let v = verdict(&spec("checker", Some(secret), DatabaseRole::Primary), &pg).await;
        assert!(v.up, "{v:?}");
        assert_eq!(v.info, "primary");
    }
    // md5.
    let v = verdict(
        &spec(
            "md5checker",
            Some(Secret::Inline(PASSWORD.into())),
            DatabaseRole::Primary,
        ),
        &pg,
    )
    .await;
    assert!(v.up, "{v:?}");

    // Wrong password: the server's message, as an authentication error, without any secret.
    for user in ["checker", "md5checker"] {
        let err = check(
            &spec(
                user,
                Some(Secret::Inline(WRONG.into())),
                DatabaseRole::Primary,
            ),
            pg.addr(),
            TIMEOUT,
        )
        .await
        .unwrap_err();
        match &err {
            DbError::Auth(text) => {
                assert!(text.contains("password authentication failed"), "{text}");
                assert!(text.contains("28P01"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        assert_no_secret(&format!("{err} {err:?}"));
    }
    // No password configured but the server wants one.
    let err = check(
        &spec("checker", None, DatabaseRole::Any),
        pg.addr(),
        TIMEOUT,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        DbError::Auth("server asks for a password but none is configured".into())
    );
    // Unknown database: the server refused the login.
    let mut no_db = spec("postgres", None, DatabaseRole::Any);
    no_db.database = Some("no_such_db".into());
    let err = check(&no_db, pg.addr(), TIMEOUT).await.unwrap_err();
    assert!(
        matches!(&err, DbError::Auth(t) if t.contains("3D000")),
        "{err:?}"
    );

    assert_no_leftover_connections(&pg);
    std::env::remove_var(var);
}

#[tokio::test]
async fn standby_role_and_lag() {
    require_postgres_or_return!();
    let mut primary = PgInstance::start_primary("p").expect("start primary");
    let standby = PgInstance::start_standby(&primary, "s").expect("start standby");
    // A commit replayed on the standby, so pg_last_xact_replay_timestamp() is known (it is
    // NULL until the first one: a standby that is behind then has an unknown lag).
    primary
        .psql(None, "CREATE TABLE first_commit(x int)")
        .unwrap();
    standby
        .wait_replay_caught_up(&primary, Duration::from_secs(30))
        .unwrap();

    // Caught up and idle: lag 0, whatever the age of the last commit.
    let mut want_standby = spec("postgres", None, DatabaseRole::Standby);
    want_standby.max_lag = Some(Duration::from_secs(5));
    let v = verdict(&want_standby, &standby).await;
    assert!(v.up, "{v:?}");
    assert_eq!(v.role, Some(ObservedRole::Standby));
    assert_eq!(v.lag, Some(Duration::ZERO), "{v:?}");
    assert_eq!(v.info, "standby, lag 0.0s");
    let mut any = want_standby.clone();
    any.role = DatabaseRole::Any;
    assert!(verdict(&any, &standby).await.up);

    let v = verdict(&spec("postgres", None, DatabaseRole::Primary), &standby).await;
    assert!(!v.up, "{v:?}");
    assert_eq!(v.info, "in recovery (standby), primary required");
    assert!(!verdict(&want_standby, &primary).await.up);

    // Replay paused while the primary writes: the standby receives WAL it does not apply, so
    // its lag is the age of the last replayed commit.
    standby.pause_replay().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    primary
        .psql(
            None,
            "CREATE TABLE lag_probe(x int); INSERT INTO lag_probe VALUES (1)",
        )
        .unwrap();
    let target = primary.wal_lsn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while standby
        .psql(
            None,
            &format!("SELECT pg_last_wal_receive_lsn() >= '{target}'::pg_lsn"),
        )
        .unwrap()
        != "t"
    {
        assert!(Instant::now() < deadline, "standby never received the WAL");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut tight = want_standby.clone();
    tight.max_lag = Some(Duration::from_millis(500));
    let v = verdict(&tight, &standby).await;
    assert!(!v.up, "{v:?}");
    assert!(v.lag.unwrap() > Duration::from_millis(500), "{v:?}");
    assert!(
        v.info.starts_with("standby lag ") && v.info.ends_with(" > max-lag 500ms"),
        "{}",
        v.info
    );
    // Without max-lag a late standby is still a standby.
    assert!(
        verdict(&spec("postgres", None, DatabaseRole::Standby), &standby)
            .await
            .up
    );

    standby.resume_replay().unwrap();
    standby
        .wait_replay_caught_up(&primary, Duration::from_secs(30))
        .unwrap();
    let v = verdict(&tight, &standby).await;
    assert!(v.up, "{v:?}");

    // Primary gone: the WAL receiver stops streaming, which counts as infinite lag.
    primary.stop().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let v = loop {
        let v = verdict(&want_standby, &standby).await;
        if !v.up || Instant::now() >= deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!v.up, "{v:?}");
    assert!(v.info.contains("WAL receiver"), "{}", v.info);
    assert!(v.info.contains("(lag infinite) > max-lag 5s"), "{}", v.info);
    // Without max-lag it still serves reads as a standby.
    assert!(
        verdict(&spec("postgres", None, DatabaseRole::Standby), &standby)
            .await
            .up
    );

    assert_no_leftover_connections(&standby);
}
