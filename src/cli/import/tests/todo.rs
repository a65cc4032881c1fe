//! Tests of the steps left to do: fail2ban's jails on PortSentry's history
//! file, and the block printed on standard error.

use super::*;

#[test]
fn fail2ban_jails_on_the_old_history_get_the_new_file() {
    let dir = std::env::temp_dir().join(format!("nftsentry-f2b-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("jail.d")).unwrap();
    let old = "/var/lib/portsentry/portsentry.history";
    // Debian's stock jail.conf, shortened; a second jail on the file with
    // the path on a continuation line; a jail on another file.
    std::fs::write(
        dir.join("jail.conf"),
        format!(
            "[DEFAULT]\nlogpath = {old}\n\n[sshd]\nport = ssh\nlogpath = %(sshd_log)s\n\n[portsentry]\nfilter = portsentry\nlogpath  = {old}\nmaxretry = 1\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("jail.d/mine.local"),
        format!("# [commented]\n[ps-watch]\nenabled = true\nlogpath = /var/log/x.log\n    {old}\n[other]\nlogpath = {old}.1\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("jail.d/ignored.txt"),
        format!("[txt]\nlogpath = {old}\n"),
    )
    .unwrap();
    assert_eq!(fail2ban_jails(&dir, old), ["portsentry", "ps-watch"]);
    let t = fail2ban_todo(&dir, old).unwrap();
    assert_eq!(
        t.commands[1],
        format!(
            "printf '[portsentry]\\nlogpath = /var/lib/nftsentry/history\\n[ps-watch]\\nlogpath = /var/lib/nftsentry/history\\n' > '{}/jail.d/nftsentry-history.local'",
            dir.display()
        )
    );
    assert!(fail2ban_todo(&dir, "/var/log/none").is_none());
    assert!(fail2ban_todo(&dir.join("absent"), old).is_none());
    // The printed block is a shell snippet: comments and commands, indented.
    let text = todo_text(&[t]);
    assert!(text.starts_with("nftsentry: to finish the migration, run as root:\n    # fail2ban: "));
    assert!(
        text.lines().skip(1).all(|l| l.starts_with("    ")),
        "{text}"
    );
    assert_eq!(todo_text(&[]), "");
    std::fs::remove_dir_all(&dir).unwrap();
}
