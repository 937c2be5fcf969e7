//! `tcpshm-ptcp`: the operator's tool for a ptcp directory and the
//! shared-memory queues.
//!
//! ```text
//! tcpshm-ptcp list DIR            queue files and .lastserver files in DIR
//! tcpshm-ptcp show FILE           the messages queued in one queue file
//! tcpshm-ptcp reset [--yes] FILE  empty a queue file (asks first)
//! tcpshm-ptcp shm NAME            a shared-memory queue's indices and depth
//! ```
//!
//! Exit status: 0 done, 1 a file is missing or not a valid file of ours (one
//! line on stderr naming it and what is wrong) or a reset was declined, 2
//! bad usage. Everything it reads goes through `tcpshm::ptcp::inspect` and
//! `tcpshm::shm::inspect`, which validate as the library does.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tcpshm::ptcp::inspect::{check_header, name_split, parse_lastserver, reset_file, QueueFile};
use tcpshm::shm::inspect::{object_path, ShmQueue};
use tcpshm::{Durability, Error};

const USAGE: &str = "\
usage: tcpshm-ptcp list DIR            queue files (*.ptcp) and .lastserver files in DIR
       tcpshm-ptcp show FILE           the messages queued in a queue file
       tcpshm-ptcp reset [--yes] FILE  empty a queue file, ack and sequence numbers 0
                                       (asks on stdin unless --yes; stop both processes first)
       tcpshm-ptcp shm NAME            a shared-memory queue (a name in /dev/shm, or a path)";

/// Why the tool stops early.
enum Fail {
    /// Bad usage: the message, then the usage; exit 2.
    Usage(String),
    /// One line naming the file and what is wrong; exit 1.
    Error(String),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Error(e.to_string())
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(Fail::Usage(msg)) => {
            eprintln!("tcpshm-ptcp: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Fail::Error(msg)) => {
            eprintln!("tcpshm-ptcp: {msg}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &[OsString]) -> Result<ExitCode, Fail> {
    let Some(cmd) = args.first() else { return Err(Fail::Usage("no command".into())) };
    let cmd = cmd.to_str().unwrap_or("");
    if matches!(cmd, "-h" | "--help" | "help") {
        out(&format!("{USAGE}\n"));
        return Ok(ExitCode::SUCCESS);
    }
    if !matches!(cmd, "list" | "show" | "reset" | "shm") {
        return Err(Fail::Usage(format!("unknown command {:?}", args[0])));
    }
    let mut yes = false;
    let mut operands = vec![];
    for a in &args[1..] {
        match a.to_str() {
            Some("--yes" | "-y") if cmd == "reset" => yes = true,
            Some(flag) if flag.starts_with('-') && flag.len() > 1 => {
                return Err(Fail::Usage(format!("unknown option {flag}")));
            }
            _ => operands.push(PathBuf::from(a)),
        }
    }
    let [operand] = operands.as_slice() else {
        return Err(Fail::Usage(format!("{cmd} takes one operand, got {}", operands.len())));
    };
    match cmd {
        "list" => list(operand),
        "show" => show(operand),
        "reset" => reset(operand, yes),
        _ => shm(operand),
    }
}

/// Writes to stdout, ignoring a closed pipe (`| head`).
fn out(s: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(s.as_bytes()).and_then(|()| stdout.flush());
}

/// An aligned table: numeric columns (those named in `right`) right-aligned;
/// a last column empty in every row is left out.
fn table(header: &[&str], right: &[&str], rows: &[Vec<String>]) -> String {
    if header.len() > 1 && !rows.is_empty() && rows.iter().all(|r| r.last().is_none_or(|c| c.is_empty())) {
        let rows: Vec<Vec<String>> = rows.iter().map(|r| r[..r.len().min(header.len() - 1)].to_vec()).collect();
        return table(&header[..header.len() - 1], right, &rows);
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&head).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            let sep = if i == 0 { "" } else { "  " };
            if right.contains(&header[i]) {
                let _ = write!(line, "{sep}{cell:>w$}");
            } else {
                let _ = write!(line, "{sep}{cell:<w$}");
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

fn durability_name(byte: u8) -> String {
    match Durability::from_byte(byte) {
        Some(Durability::Never) => "never".into(),
        Some(Durability::EveryPush) => "every-push".into(),
        Some(Durability::OnDemand) => "on-demand".into(),
        _ => format!("unknown ({byte})"),
    }
}

/// The local and remote names of a queue file, and a note when the file
/// name does not give them.
fn split_names(stem: &str, name_size: u32) -> (String, String, String) {
    match name_split(stem, name_size) {
        Some((l, r)) => (l, r, String::new()),
        None => ("?".into(), "?".into(), "name is not <local>_<remote> of two valid names (which hold no _)".into()),
    }
}

fn list(dir: &Path) -> Result<ExitCode, Fail> {
    let entries = std::fs::read_dir(dir).map_err(|e| Fail::Error(format!("{}: {e}", dir.display())))?;
    let (mut queues, mut lastservers) = (BTreeMap::new(), BTreeMap::new());
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
        if !path.is_file() {
            continue;
        }
        if let Some(stem) = name.strip_suffix(".ptcp") {
            queues.insert(stem.to_owned(), (path.clone(), QueueFile::read(&path)));
        } else if let Some(client) = name.strip_suffix(".lastserver") {
            let bytes = std::fs::read(&path).map_err(|e| format!("read lastserver file {}: {e}", path.display()));
            lastservers.insert(client.to_owned(), (path.clone(), bytes));
        }
    }
    let mut problems = vec![];
    // The servers the .lastserver files name, checked against the NAME_SIZE
    // of the client's queue files when the client has one.
    let mut ls_rows = vec![];
    for (client, (path, bytes)) in &lastservers {
        let name_size = queues.iter().find_map(|(stem, (_, q))| {
            let q = q.as_ref().ok()?;
            name_split(stem, q.name_size).is_some_and(|(l, _)| &l == client).then_some(q.name_size)
        });
        let parsed = match bytes {
            Ok(b) => parse_lastserver(b, name_size).map_err(|d| format!("{}: {d}", path.display())),
            Err(e) => Err(e.clone()),
        };
        let mut note = vec![];
        let server = match parsed {
            Err(p) => {
                problems.push(p);
                continue;
            }
            Ok(None) => "(none yet)".to_string(),
            Ok(Some(server)) => {
                if !queues.contains_key(&format!("{client}_{server}")) {
                    note.push(format!("no queue file {client}_{server}.ptcp here"));
                }
                server
            }
        };
        if name_size.is_none() {
            note.push("size not checked: no queue file of this client here".into());
        }
        ls_rows.push(vec![format!("{client}.lastserver"), client.clone(), server, note.join("; ")]);
    }
    let mut q_rows = vec![];
    for (stem, (path, q)) in &queues {
        let q = match q {
            Ok(q) => q,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        let (local, remote, split_note) = split_names(stem, q.name_size);
        let mut note: Vec<String> = [split_note].into_iter().filter(|n| !n.is_empty()).collect();
        if q.ack_repaired() {
            note.push(format!("stored ack {} repaired on open", q.indices.ack_seq));
        }
        if !q.little_endian {
            note.push("big-endian headers".into());
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let n = |v: u64| v.to_string();
        q_rows.push(vec![
            name,
            local,
            remote,
            n(q.seq_start().into()),
            n(q.seq_end().into()),
            n(q.ack_seq.into()),
            n(q.messages.len() as u64),
            n(q.used_bytes()),
            n(q.free_bytes()),
            durability_name(q.durability),
            note.join("; "),
        ]);
    }
    let mut s = String::new();
    if q_rows.is_empty() {
        let _ = writeln!(s, "no valid queue files (*.ptcp) in {}", dir.display());
    } else {
        let header = ["FILE", "LOCAL", "REMOTE", "SEQ_START", "SEQ_END", "ACK", "MSGS", "USED", "FREE"];
        let header = [&header[..], &["DURABILITY", "NOTE"]].concat();
        s += &table(&header, &header[3..9], &q_rows);
    }
    s.push('\n');
    if ls_rows.is_empty() {
        let _ = writeln!(s, "no valid .lastserver files in {}", dir.display());
    } else {
        s += &table(&["FILE", "CLIENT", "SERVER", "NOTE"], &[], &ls_rows);
    }
    out(&s);
    for p in &problems {
        eprintln!("tcpshm-ptcp: {p}");
    }
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn show(path: &Path) -> Result<ExitCode, Fail> {
    let q = QueueFile::read(path)?;
    let order = if q.little_endian { "little-endian" } else { "big-endian" };
    let mut s = format!(
        "{}: queue of {} bytes, NAME_SIZE {}, {order} headers, durability {}\n",
        path.display(),
        q.queue_size,
        q.name_size,
        durability_name(q.durability)
    );
    let _ = writeln!(
        s,
        "seq_start {}  seq_end {}  ack {}  messages {}  used {} bytes  free {} bytes",
        q.seq_start(),
        q.seq_end(),
        q.ack_seq,
        q.messages.len(),
        q.used_bytes(),
        q.free_bytes()
    );
    if q.ack_repaired() {
        let stored = q.indices.ack_seq;
        let _ = writeln!(
            s,
            "(the stored ack is {stored}; the last message carries one more, as after a crash between \
             a reply's store and its pop's; opening the file repairs it)"
        );
    }
    if q.messages.is_empty() {
        s += "no messages queued\n";
    } else {
        let rows: Vec<Vec<String>> = q
            .messages
            .iter()
            .map(|m| {
                let offset = m.block as u64 * 8;
                vec![
                    m.seq.to_string(),
                    m.msg_type.to_string(),
                    m.size.to_string(),
                    m.ack_seq.to_string(),
                    offset.to_string(),
                ]
            })
            .collect();
        let header = ["SEQ", "TYPE", "SIZE", "ACK", "OFFSET"];
        s += &table(&header, &header, &rows);
    }
    out(&s);
    Ok(ExitCode::SUCCESS)
}

fn reset(path: &Path, yes: bool) -> Result<ExitCode, Fail> {
    let shown = path.display();
    match QueueFile::read(path) {
        Ok(q) => out(&format!(
            "{shown}: {} message(s) queued, seq_start {} seq_end {} ack {}: the messages will be discarded, \
             the ack and sequence numbers set to 0\n",
            q.messages.len(),
            q.seq_start(),
            q.seq_end(),
            q.ack_seq
        )),
        Err(Error::FileCorrupt { detail, .. }) => {
            // A file of ours whose indices or messages are broken can be
            // emptied; anything else is not ours to write.
            check_header(path)?;
            out(&format!("{shown}: {detail}: the file will be emptied, ack and sequence numbers 0\n"));
        }
        Err(e) => return Err(e.into()),
    }
    if !yes {
        out(&format!("Reset {shown}? Both processes must be stopped. [y/N] "));
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Err(Fail::Error(format!("{shown}: not reset")));
        }
    }
    reset_file(path)?;
    let q = QueueFile::read(path)?;
    let mut s = format!("{shown}: reset: seq_start {} seq_end {} ack {}\n", q.seq_start(), q.seq_end(), q.ack_seq);
    let stem = path.file_stem().and_then(|n| n.to_str()).unwrap_or("");
    if let Some((local, remote)) = name_split(stem, q.name_size) {
        let _ = writeln!(s, "Reset the peer's file too: {remote}_{local}.ptcp in {remote}'s ptcp directory.");
    } else {
        s += "Reset the peer's queue file too.\n";
    }
    out(&s);
    Ok(ExitCode::SUCCESS)
}

fn shm(name: &Path) -> Result<ExitCode, Fail> {
    let name = name.to_string_lossy();
    let mut path = object_path(&name);
    if !path.exists() && !name.contains('/') && !name.ends_with(".shm") {
        path = object_path(&format!("{name}.shm"));
    }
    let q = ShmQueue::read(&path)?;
    let rows = [
        ("queue size", format!("{} bytes ({} blocks of 64)", q.queue_size, q.blocks())),
        ("write_idx", q.write_idx.to_string()),
        ("read_idx", q.read_idx.to_string()),
        ("consumed", format!("{} (the producer's read index in its peer's queue at its last publish)", q.consumed)),
        ("depth", format!("{} blocks, {} bytes", q.depth_blocks(), q.depth_bytes())),
        ("messages", format!("{} waiting", q.messages.len())),
    ];
    let mut s = format!("{}\n", path.display());
    for (k, v) in rows {
        let _ = writeln!(s, "{k:<10}  {v}");
    }
    out(&s);
    Ok(ExitCode::SUCCESS)
}
