//! Reading the files of a checkout that decide a build before any command
//! runs, without following a symlink out of the repository.

use std::path::Path;

/// Reads a file the build decides on before any command runs (`slipway.toml`,
/// `requirements.txt`, `package.json`, a lockfile) at the root of the
/// checkout, refusing a symlink: a repository must not make the builder
/// read a file outside it.
pub(crate) fn read_input(src: &Path, name: &str) -> std::io::Result<String> {
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
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}
