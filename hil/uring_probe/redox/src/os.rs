//! The handful of raw I/O calls the cases use, by file descriptor number.
//!
//! On Redox these are the probe's own system call wrappers (`sys.rs`: inline `syscall`, no libc in
//! between, so a latency is one system call). On other hosts the same functions are built on std, only so
//! that the platform-independent case code (`disk.rs`) can be compiled and unit-tested here.

#[cfg(any(target_os = "redox", hil_redox_typecheck))]
pub use crate::sys::{fsync, lseek, monotonic_ns, pread, pwrite, read, write};

#[cfg(not(any(target_os = "redox", hil_redox_typecheck)))]
pub use host::{fsync, lseek, monotonic_ns, pread, pwrite, read, write};

/// `lseek` whence values (redox-os/syscall `src/flag.rs`: SEEK_SET 0, SEEK_CUR 1, SEEK_END 2).
pub const SEEK_SET: usize = 0;
pub const SEEK_CUR: usize = 1;
pub const SEEK_END: usize = 2;

#[cfg(not(any(target_os = "redox", hil_redox_typecheck)))]
mod host {
    use std::fs::File;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::mem::ManuallyDrop;
    use std::sync::OnceLock;
    use std::time::Instant;

    use crate::errno::{Errno, EINVAL};

    #[cfg(unix)]
    fn borrow(fd: usize) -> ManuallyDrop<File> {
        use std::os::fd::FromRawFd;
        // SAFETY: the caller owns `fd` (a File it keeps open); ManuallyDrop never closes it.
        ManuallyDrop::new(unsafe { File::from_raw_fd(fd as i32) })
    }

    fn err(e: std::io::Error) -> Errno {
        Errno::from_io(&e)
    }

    pub fn read(fd: usize, buf: &mut [u8]) -> Result<usize, Errno> {
        (&*borrow(fd)).read(buf).map_err(err)
    }

    pub fn write(fd: usize, buf: &[u8]) -> Result<usize, Errno> {
        (&*borrow(fd)).write(buf).map_err(err)
    }

    pub fn pread(fd: usize, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
        use std::os::unix::fs::FileExt;
        borrow(fd).read_at(buf, offset).map_err(err)
    }

    pub fn pwrite(fd: usize, buf: &[u8], offset: u64) -> Result<usize, Errno> {
        use std::os::unix::fs::FileExt;
        borrow(fd).write_at(buf, offset).map_err(err)
    }

    pub fn fsync(fd: usize) -> Result<(), Errno> {
        borrow(fd).sync_all().map_err(err)
    }

    pub fn lseek(fd: usize, offset: i64, whence: usize) -> Result<u64, Errno> {
        let pos = match whence {
            super::SEEK_SET => SeekFrom::Start(offset as u64),
            super::SEEK_CUR => SeekFrom::Current(offset),
            super::SEEK_END => SeekFrom::End(offset),
            _ => return Err(Errno(EINVAL)),
        };
        (&*borrow(fd)).seek(pos).map_err(err)
    }

    /// Nanoseconds on a monotonic clock (from the first call in this process).
    pub fn monotonic_ns() -> u64 {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

#[cfg(all(test, unix, not(any(target_os = "redox", hil_redox_typecheck))))]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn host_calls_on_a_temp_file() {
        let path = std::env::temp_dir().join(format!("hil-os-{}", std::process::id()));
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        let fd = file.as_raw_fd() as usize;
        assert_eq!(pwrite(fd, b"hello", 10).unwrap(), 5);
        let mut buf = [0u8; 5];
        assert_eq!(pread(fd, &mut buf, 10).unwrap(), 5);
        assert_eq!(&buf, b"hello");
        assert_eq!(lseek(fd, 0, SEEK_END).unwrap(), 15);
        assert_eq!(lseek(fd, 0, SEEK_SET).unwrap(), 0);
        assert_eq!(write(fd, b"ab").unwrap(), 2);
        assert_eq!(lseek(fd, 0, SEEK_SET).unwrap(), 0);
        assert_eq!(read(fd, &mut buf[..2]).unwrap(), 2);
        assert_eq!(&buf[..2], b"ab");
        fsync(fd).unwrap();
        let a = monotonic_ns();
        assert!(monotonic_ns() >= a);
        drop(file);
        std::fs::remove_file(path).unwrap();
    }
}
