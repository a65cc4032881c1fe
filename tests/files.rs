//! files: what root writes into a directory the daemon owns (the command
//! line while the service is stopped) belongs to the directory's owner, or
//! the daemon could not read its own files at its next start (root; fails
//! without it).

use std::os::unix::fs::MetadataExt;

#[test]
fn root_gives_new_files_to_the_directory_owner() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (CI runs as root)"
    );
    let dir = std::env::temp_dir().join(format!("nfst-owner-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let nobody = nix::unistd::Uid::from_raw(65534);
    let nogroup = nix::unistd::Gid::from_raw(65534);
    nix::unistd::chown(&dir, Some(nobody), Some(nogroup)).unwrap();
    let state = dir.join("state");
    nftsentry::journal::state_file::save(&state, []).unwrap();
    drop(nftsentry::journal::state_file::lock(&state).unwrap());
    nftsentry::journal::history::append(&dir.join("history"), "x").unwrap();
    for f in ["state", "state.lock", "history"] {
        let m = std::fs::metadata(dir.join(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (65534, 65534), "{f}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
