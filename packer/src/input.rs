//! Reading the files of a checkout that decide a build before any command
//! runs, without following a symlink out of the repository.

use std::path::Path;

/// Reads a file the build decides on before any command runs (`slipway.toml`,
/// `requirements.txt`, `package.json`, a lockfile) at the root of the
/// checkout, refusing a symlink: a repository must not make the builder
/// read a file outside it.
pub(crate) fn read_input(src: &Path, name: &str) -> std::io::Result<String> {
    String::from_utf8(read_input_bytes(src, name)?).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{name} is not UTF-8 text"),
        )
    })
}

/// [`read_input`] for a file that need not be text (`bun.lockb`).
pub(crate) fn read_input_bytes(src: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt;
    let path = src.join(name);
    let refuse = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{name} is a symlink or not a regular file; the builder reads it only as a regular file of the repository"
            ),
        )
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                refuse()
            } else {
                e
            }
        })?;
    if !file.metadata()?.is_file() {
        return Err(refuse());
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}
