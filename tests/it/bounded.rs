//! Files named on the command line are read with their limit enforced while reading: a device
//! or an endless pipe given as any of them ends with an error naming it, not a hang.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::{audit, tmp};

/// Runs `audit args…`, killing it (and failing) if it has not finished in a minute: a
/// command reading /dev/zero without a bound never finishes.
fn refused(args: &[&str]) -> String {
    refused_naming(args, "/dev/zero")
}

/// [`refused`], for an error that must name `name`.
fn refused_naming(args: &[&str], name: &str) -> String {
    let mut child = audit()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("audit {args:?} still reading after a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "audit {args:?} succeeded: {stderr}");
    assert!(stderr.contains(name), "audit {args:?}: {stderr}");
    stderr
}

#[test]
fn a_device_given_as_any_file_argument_is_refused_by_name() {
    let d = tmp();
    let out = d.path().join("x.audit.zip");
    let out = out.to_str().unwrap();
    let prefix = d.path().join("k");
    let prefix = prefix.to_str().unwrap();
    let e = refused(&["verify", "/dev/zero", "--allow-unsigned"]);
    assert!(e.contains("not a regular file"), "{e}");
    refused(&["diff", "/dev/zero", "/dev/zero"]);
    for (args, limit) in [
        (
            vec!["keygen", "--out", prefix, "--password-file", "/dev/zero"],
            "65536",
        ),
        (
            vec!["run", "a", "b", "--key", "/dev/zero", "--out", out],
            "65536",
        ),
        (
            vec!["run", "--config", "/dev/zero", "--out", out],
            "4194304",
        ),
        (
            vec!["compare", "a", "b", "--rubric", "/dev/zero", "--out", out],
            "4194304",
        ),
    ] {
        let e = refused(&args);
        assert!(
            e.contains(&format!("larger than the {limit} bytes")),
            "{args:?}: {e}"
        );
    }
    // The public key is read before the bundle is opened.
    let e = refused(&["verify", out, "--pubkey", "/dev/zero"]);
    assert!(e.contains("65536"), "{e}");
    let e = refused(&[
        "compare",
        "a",
        "b",
        "--calibration",
        "/dev/zero",
        "--out",
        out,
    ]);
    assert!(e.contains("larger than the 16777216 bytes"), "{e}");
    // A pinned local input pointed at a device is not a model folder.
    let pinned = format!("local:glm-a@sha256:{}", "0".repeat(64));
    let e = refused(&[
        "run",
        &pinned,
        &pinned,
        "--input",
        "glm-a=/dev/zero",
        "--out",
        out,
    ]);
    assert!(e.contains("local input glm-a"), "{e}");
}

/// A named pipe whose writer never stops: read up to the argument's limit, then refused.
#[test]
fn an_endless_pipe_given_as_a_file_argument_is_refused_by_name() {
    use std::io::Write;
    let d = tmp();
    let out = d.path().join("x");
    let out = out.to_str().unwrap();
    for (flag, limit) in [("--rubric", "4194304"), ("--calibration", "16777216")] {
        let fifo = d.path().join(format!("endless{flag}"));
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let path = fifo.clone();
        // Writes until the reader goes away (then the write fails and the thread ends).
        std::thread::spawn(move || {
            if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path) {
                let block = vec![b'#'; 1 << 16];
                while f.write_all(&block).is_ok() {}
            }
        });
        let name = fifo.to_str().unwrap();
        let e = refused_naming(&["compare", "a", "b", flag, name, "--out", out], name);
        assert!(e.contains(&format!("larger than the {limit} bytes")), "{e}");
    }
}
