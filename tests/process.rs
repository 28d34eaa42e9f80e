//! A guard for the processes a test starts: whatever happens (assert failure, panic, early
//! return), every process of the group is SIGKILLed and the child is reaped.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};

/// A started program in its own process group, with piped stdin and stdout.
pub struct ProcessGuard {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
    status: Option<ExitStatus>,
}

impl ProcessGuard {
    /// Starts `cmd` as the leader of a new process group (so the guard can kill every
    /// process it forks), with stdin and stdout piped to the test; stderr is inherited.
    pub fn spawn(mut cmd: Command) -> io::Result<ProcessGuard> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(BufReader::new);
        Ok(ProcessGuard {
            child,
            stdin,
            stdout,
            status: None,
        })
    }

    /// The pid of the started process.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Reads one line of the program's stdout (blocking), without the newline. EOF is an
    /// `UnexpectedEof` error.
    pub fn read_line(&mut self) -> io::Result<String> {
        let out = self
            .stdout
            .as_mut()
            .ok_or_else(|| io::Error::other("stdout not piped"))?;
        let mut line = String::new();
        if out.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end_matches('\n').to_owned())
    }

    /// Reads lines until one equals `want`; panics on EOF.
    pub fn expect_line(&mut self, want: &str) {
        loop {
            match self.read_line() {
                Ok(line) if line == want => return,
                Ok(_) => {}
                Err(e) => panic!("waiting for {want:?} from pid {}: {e}", self.pid()),
            }
        }
    }

    /// Writes one line to the program's stdin.
    pub fn send_line(&mut self, line: &str) -> io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::other("stdin closed"))?;
        stdin.write_all(line.as_bytes())?;
        stdin.write_all(b"\n")?;
        stdin.flush()
    }

    /// Closes the program's stdin (it reads EOF).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the started process to exit.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(st) = self.status {
            return Ok(st);
        }
        let st = self.child.wait()?;
        self.status = Some(st);
        Ok(st)
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        // The group id is the child's pid (process_group(0)). Kill the whole group first,
        // so no grandchild outlives the test, then reap the child.
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// SIGKILLs a process that is not the test's child when dropped (or when asked), for
/// a restored task (reaped by whoever it is reparented to).
pub struct KillOnDrop(pub i32);

impl KillOnDrop {
    /// SIGKILL now (again when dropped: harmless once it is gone).
    pub fn kill(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True when `test` must stop because the tests do not run as root: it printed a visible
/// SKIP line, or, under CI, it panicked ([`crs_testkit::skip`]).
pub fn skip_unless_root(test: &str) -> bool {
    !crs_testkit::root_or_skip(test)
}
