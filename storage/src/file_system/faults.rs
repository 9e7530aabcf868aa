//! A [`FileSystem`] that fails chosen operations, for fault-injection tests.
//!
//! A fault with a delay (`delay_ms`) fails nothing: it slows every matching operation down, as a
//! saturated or failing disk does, so tests can check what waits for a slow disk and what does not.
//!
//! A [`Fault`] is armed on one kind of operation ([`FileOp`]) on paths under one directory: it
//! lets `skip` matching operations through, then fails the next one (or, if `persistent`, every
//! later one, as a dead disk does) with an OS error such as EIO, ENOSPC or EMFILE. A failed write
//! can first write a prefix of its bytes (`torn_at`), as a crash or a full disk leaves it. Faults
//! under different directories are independent, so tests running in parallel do not disturb each
//! other. Every armed fault also counts the operations it matched, so a test can first count the
//! injection points of a workload and then fail each one in turn.

use std::fs::{File, OpenOptions, ReadDir};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, RwLock};

use memmap2::MmapMut;

use super::{FileOp, FileSystem, OsFileSystem};

/// EIO: an I/O error reported by the device.
pub const EIO: i32 = 5;
/// ENOSPC: no space left on the device.
pub const ENOSPC: i32 = 28;
/// EMFILE: the process is out of file descriptors.
pub const EMFILE: i32 = 24;

/// One armed fault.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The kind of operation that fails.
    pub op: FileOp,
    /// Only operations on paths under this directory match.
    pub under: PathBuf,
    /// Matching operations let through before the first failure.
    pub skip: u64,
    /// The OS error number returned.
    pub errno: i32,
    /// For writes: how many bytes of the failing write reach the file first.
    pub torn_at: Option<usize>,
    /// Fail every matching operation after the first failure too.
    pub persistent: bool,
    /// Operations match only while this file exists (a switch a test flips from outside).
    pub when_exists: Option<PathBuf>,
    /// A slow disk instead of a failure: every matching operation after `skip` sleeps this long,
    /// then goes through.
    pub delay: Option<std::time::Duration>,
}

impl Fault {
    /// A fault failing the operation after `skip` matching ones with `errno`, once.
    pub fn new(op: FileOp, under: &Path, skip: u64, errno: i32) -> Fault {
        Fault {
            op,
            under: under.to_path_buf(),
            skip,
            errno,
            torn_at: None,
            persistent: false,
            when_exists: None,
            delay: None,
        }
    }

    /// Parses `op=<open|read|write|sync|set_len|map|rename|remove>` followed by any of
    /// `errno=<EIO|ENOSPC|EMFILE|number>` (default EIO), `under=<dir>` (default `/`), `after=<n>`
    /// (operations let through first), `torn_at=<bytes>`, `persistent`, `when=<file>` and
    /// `delay_ms=<n>` (slow, not failing), separated by commas: e.g.
    /// `op=write,errno=ENOSPC,persistent,when=/tmp/disk-full`.
    pub fn parse(spec: &str) -> Result<Fault, String> {
        let mut fault = Fault::new(FileOp::Write, Path::new("/"), 0, EIO);
        let mut op = None;
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item.split_once('=').unwrap_or((item, ""));
            let number = |v: &str| v.parse::<u64>().map_err(|_| format!("{key}: not a number: {v:?}"));
            match key {
                "op" => {
                    op = Some(match value {
                        "open" => FileOp::Open,
                        "read" => FileOp::Read,
                        "write" => FileOp::Write,
                        "sync" => FileOp::Sync,
                        "set_len" => FileOp::SetLen,
                        "map" => FileOp::Map,
                        "rename" => FileOp::Rename,
                        "remove" => FileOp::Remove,
                        other => return Err(format!("unknown operation {other:?}")),
                    })
                }
                "errno" => {
                    fault.errno = match value {
                        "EIO" => EIO,
                        "ENOSPC" => ENOSPC,
                        "EMFILE" => EMFILE,
                        other => number(other)? as i32,
                    }
                }
                "under" => fault.under = PathBuf::from(value),
                "after" => fault.skip = number(value)?,
                "torn_at" => fault.torn_at = Some(number(value)? as usize),
                "persistent" => fault.persistent = true,
                "when" => fault.when_exists = Some(PathBuf::from(value)),
                "delay_ms" => fault.delay = Some(std::time::Duration::from_millis(number(value)?)),
                other => return Err(format!("unknown fault setting {other:?}")),
            }
        }
        fault.op = op.ok_or("a fault needs op=<operation>")?;
        Ok(fault)
    }

    /// A fault that never fires: it only counts matching operations.
    pub fn counter(op: FileOp, under: &Path) -> Fault {
        Fault::new(op, under, u64::MAX, EIO)
    }
}

#[derive(Debug)]
struct Armed {
    id: u64,
    fault: Fault,
    seen: u64,
    fired: u64,
}

/// Identifies an armed fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultId(u64);

/// What a fault decided for one operation.
enum Verdict {
    Pass,
    Fail(io::Error, Option<usize>),
}

impl Verdict {
    fn pass_after(delay: Option<std::time::Duration>) -> Verdict {
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        Verdict::Pass
    }
}

/// The fault-injecting file system (see the module docs).
#[derive(Debug, Default)]
pub struct FaultInjector {
    armed: Mutex<(u64, Vec<Armed>)>,
    /// Directories under which fsyncs are skipped.
    no_fsync: RwLock<Vec<PathBuf>>,
}

static INJECTOR: OnceLock<FaultInjector> = OnceLock::new();

/// The process's injector (not necessarily installed).
pub(crate) fn injector() -> &'static FaultInjector {
    INJECTOR.get_or_init(FaultInjector::default)
}

/// Installs the injector as the store's file system and returns it; `None` if the store already
/// used another one in this process (install it before any log is opened).
pub fn install() -> Option<&'static FaultInjector> {
    let injector = injector();
    if super::install(injector) {
        return Some(injector);
    }
    let installed: *const dyn FileSystem = super::fs();
    std::ptr::addr_eq(installed, injector as *const FaultInjector).then_some(injector)
}

impl FaultInjector {
    /// Arms a fault.
    pub fn arm(&self, fault: Fault) -> FaultId {
        let mut armed = self.lock();
        armed.0 += 1;
        let id = armed.0;
        armed.1.push(Armed { id, fault, seen: 0, fired: 0 });
        FaultId(id)
    }

    /// Operations the fault matched so far (including those it failed).
    pub fn seen(&self, id: FaultId) -> u64 {
        self.lock().1.iter().find(|a| a.id == id.0).map_or(0, |a| a.seen)
    }

    /// Operations the fault failed so far.
    pub fn fired(&self, id: FaultId) -> u64 {
        self.lock().1.iter().find(|a| a.id == id.0).map_or(0, |a| a.fired)
    }

    /// Disarms one fault.
    pub fn disarm(&self, id: FaultId) {
        self.lock().1.retain(|a| a.id != id.0);
    }

    /// Skips the fsyncs of files under `dir` (they still count and can still fail): for tests
    /// that only simulate process crashes, where the page cache survives, to run faster.
    pub fn skip_fsync_under(&self, dir: &Path) {
        self.no_fsync.write().unwrap_or_else(|p| p.into_inner()).push(dir.to_path_buf());
    }

    fn real_fsync(&self, path: &Path) -> bool {
        !self.no_fsync.read().unwrap_or_else(|p| p.into_inner()).iter().any(|d| path.starts_with(d))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, Vec<Armed>)> {
        self.armed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(&self, op: FileOp, path: &Path) -> Verdict {
        let mut armed = self.lock();
        let mut delay = None;
        for a in armed.1.iter_mut().filter(|a| a.fault.op == op && path.starts_with(&a.fault.under)) {
            if a.fault.when_exists.as_ref().is_some_and(|switch| !switch.exists()) {
                continue;
            }
            a.seen += 1;
            if let Some(d) = a.fault.delay {
                if a.seen > a.fault.skip {
                    a.fired += 1;
                    delay = Some(d.max(delay.unwrap_or_default()));
                }
                continue;
            }
            let due = a.seen > a.fault.skip && (a.fired == 0 || a.fault.persistent);
            if due {
                a.fired += 1;
                return Verdict::Fail(io::Error::from_raw_os_error(a.fault.errno), a.fault.torn_at);
            }
        }
        // Sleep without the faults' lock: other operations are not slowed down.
        drop(armed);
        Verdict::pass_after(delay)
    }

    fn gate(&self, op: FileOp, path: &Path) -> io::Result<()> {
        match self.check(op, path) {
            Verdict::Pass => Ok(()),
            Verdict::Fail(e, _) => Err(e),
        }
    }
}

impl FileSystem for FaultInjector {
    fn open(&self, path: &Path, options: &OpenOptions) -> io::Result<File> {
        self.gate(FileOp::Open, path)?;
        OsFileSystem.open(path, options)
    }

    fn read_dir(&self, path: &Path) -> io::Result<ReadDir> {
        self.gate(FileOp::Open, path)?;
        OsFileSystem.read_dir(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.gate(FileOp::Open, path)?;
        OsFileSystem.create_dir_all(path)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.gate(FileOp::Read, path)?;
        OsFileSystem.read(path)
    }

    fn read_at(&self, file: &File, path: &Path, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.gate(FileOp::Read, path)?;
        OsFileSystem.read_at(file, path, buf, offset)
    }

    fn write_at(&self, file: &File, path: &Path, buf: &[u8], offset: u64) -> io::Result<()> {
        match self.check(FileOp::Write, path) {
            Verdict::Pass => OsFileSystem.write_at(file, path, buf, offset),
            Verdict::Fail(e, torn_at) => {
                if let Some(n) = torn_at {
                    OsFileSystem.write_at(file, path, &buf[..n.min(buf.len())], offset)?;
                }
                Err(e)
            }
        }
    }

    fn sync_data(&self, file: &File, path: &Path) -> io::Result<()> {
        self.gate(FileOp::Sync, path)?;
        if self.real_fsync(path) {
            OsFileSystem.sync_data(file, path)?;
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.gate(FileOp::Sync, path)?;
        if self.real_fsync(path) {
            OsFileSystem.sync_dir(path)?;
        }
        Ok(())
    }

    fn set_len(&self, file: &File, path: &Path, len: u64) -> io::Result<()> {
        self.gate(FileOp::SetLen, path)?;
        OsFileSystem.set_len(file, path, len)
    }

    fn map(&self, file: &File, path: &Path, len: usize) -> io::Result<MmapMut> {
        self.gate(FileOp::Map, path)?;
        OsFileSystem.map(file, path, len)
    }

    fn sync_map(&self, map: &MmapMut, path: &Path) -> io::Result<()> {
        self.gate(FileOp::Sync, path)?;
        if self.real_fsync(path) {
            OsFileSystem.sync_map(map, path)?;
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.gate(FileOp::Rename, from)?;
        OsFileSystem.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.gate(FileOp::Remove, path)?;
        OsFileSystem.remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.gate(FileOp::Remove, path)?;
        OsFileSystem.remove_dir_all(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fault_specs() {
        let f = Fault::parse("op=write,errno=ENOSPC,under=/data,after=3,torn_at=7,persistent,when=/tmp/x").unwrap();
        assert_eq!(f.op, FileOp::Write);
        assert_eq!(f.errno, ENOSPC);
        assert_eq!(f.under, PathBuf::from("/data"));
        assert_eq!((f.skip, f.torn_at, f.persistent), (3, Some(7), true));
        assert_eq!(f.when_exists, Some(PathBuf::from("/tmp/x")));
        let f = Fault::parse("op=sync").unwrap();
        assert_eq!((f.op, f.errno, f.skip, f.persistent), (FileOp::Sync, EIO, 0, false));
        assert_eq!(Fault::parse("op=sync,errno=24").unwrap().errno, EMFILE);
        assert!(Fault::parse("errno=EIO").is_err());
        assert!(Fault::parse("op=chmod").is_err());
        assert!(Fault::parse("op=write,after=x").is_err());
        assert!(Fault::parse("op=write,colour=red").is_err());
        let f = Fault::parse("op=write,delay_ms=250").unwrap();
        assert_eq!(f.delay, Some(std::time::Duration::from_millis(250)));
    }

    #[test]
    fn a_delay_slows_matching_operations_and_fails_none() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("data");
        let delay = std::time::Duration::from_millis(200);
        let id = injector().arm(Fault { delay: Some(delay), ..Fault::new(FileOp::Remove, dir.path(), 0, EIO) });
        std::fs::write(&target, b"x").unwrap();
        let started = std::time::Instant::now();
        assert!(crate::fsutil::remove_if_exists(&target).unwrap());
        assert!(started.elapsed() >= delay);
        assert_eq!(injector().fired(id), 1);
        injector().disarm(id);
    }

    #[test]
    fn a_switched_fault_matches_only_while_its_file_exists() {
        let dir = tempfile::tempdir().unwrap();
        let switch = dir.path().join("switch");
        let target = dir.path().join("data");
        let id = injector()
            .arm(Fault { when_exists: Some(switch.clone()), ..Fault::new(FileOp::Remove, dir.path(), 0, ENOSPC) });
        std::fs::write(&target, b"x").unwrap();
        assert!(crate::fsutil::remove_if_exists(&target).unwrap());
        std::fs::write(&target, b"x").unwrap();
        std::fs::write(&switch, b"").unwrap();
        let err = crate::fsutil::remove_if_exists(&target).unwrap_err();
        assert!(err.to_string().contains("No space left"), "{err}");
        assert_eq!(injector().fired(id), 1);
        injector().disarm(id);
    }
}
