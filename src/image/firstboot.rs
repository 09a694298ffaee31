//! What a baked image does on its first boots, as text: the `cmdline.txt` hook, the bootstrap
//! script, the install runner, and the native first-boot files of the image's release
//! (`userconf.txt` + `ssh` on Bookworm, cloud-init `user-data`/`meta-data`/`network-config` on
//! Trixie). Pure: values are validated here and quoted for the language they land in, so
//! nothing a user types can become a second shell command or YAML key.

use std::fmt::Write as _;

/// Our directory on the boot partition (`/boot/firmware/pi-setup` on the Pi).
pub(crate) const DIR: &str = "pi-setup";

/// The tokens appended to the single `cmdline.txt` line. systemd runs the script instead of
/// the normal boot (kernel-command-line.target), then reboots; the script removes exactly these
/// three. The firmware reads only the first line, so they must stay on it.
pub(crate) const HOOK: [&str; 3] = [
    "systemd.run=/boot/firmware/pi-setup/bootstrap.sh",
    "systemd.run_success_action=reboot",
    "systemd.unit=kernel-command-line.target",
];

/// Raspberry Pi OS's own first-boot scripts edit cmdline.txt with patterns that would also
/// eat a token of ours starting like this (and look for `firstboot` anywhere in it).
#[cfg(test)]
const FORBIDDEN_PREFIXES: [&str; 4] = ["quiet", "resize", "init=", "splash"];

/// The release of the image, read from its root file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Release {
    /// Raspberry Pi OS 12: `userconf.txt` and `ssh` on the boot partition.
    Bookworm,
    /// Raspberry Pi OS 13: cloud-init's NoCloud files on the boot partition when it carries
    /// cloud-init, else the Bookworm way.
    Trixie,
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Release::Bookworm => "bookworm",
            Release::Trixie => "trixie",
        })
    }
}

/// `cmdline.txt` with the hook on its first line: unchanged when the hook is already there
/// (baking twice appends nothing), an error when another first-boot script already holds
/// `systemd.run=` (both cannot run).
pub(crate) fn add_hook(cmdline: &str) -> Result<String, String> {
    let (line, rest) = cmdline.split_once('\n').unwrap_or((cmdline, ""));
    let had_newline = cmdline.contains('\n');
    // A CR the file had (edited on Windows) is dropped: the bootstrap's `sed` matches a token
    // followed by a space or the end of the line, and the kernel needs no CR.
    let line = line.strip_suffix('\r').unwrap_or(line);
    let tokens: Vec<&str> = line.split_whitespace().collect();
    if HOOK.iter().all(|h| tokens.contains(h)) {
        return Ok(cmdline.to_string());
    }
    if let Some(other) = tokens.iter().find(|t| t.starts_with("systemd.run=")) {
        return Err(format!(
            "cmdline.txt already runs a first-boot script ({other}): start from an image that has not been customised"
        ));
    }
    if tokens.is_empty() {
        return Err("cmdline.txt is empty: not a Raspberry Pi OS boot partition?".into());
    }
    let mut out = line.trim_end().to_string();
    for h in HOOK {
        if !tokens.contains(&h) {
            out.push(' ');
            out.push_str(h);
        }
    }
    if had_newline {
        out.push('\n');
        out.push_str(rest);
    }
    Ok(out)
}

#[cfg(test)]
/// The first line without the hook's tokens (what the bootstrap's `sed` does on the Pi).
pub(crate) fn remove_hook(cmdline: &str) -> String {
    let (line, rest) = cmdline.split_once('\n').unwrap_or((cmdline, ""));
    let mut line = line.to_string();
    for h in HOOK {
        line = line.replace(&format!(" {h}"), "");
    }
    if cmdline.contains('\n') {
        format!("{line}\n{rest}")
    } else {
        line
    }
}

/// Whether the hook is still on the first line (the bootstrap has not run yet).
pub(crate) fn has_hook(cmdline: &str) -> bool {
    let line = cmdline.lines().next().unwrap_or("");
    HOOK.iter()
        .all(|h| line.split_whitespace().any(|t| t == *h))
}

#[cfg(test)]
/// Checks the invariants Raspberry Pi OS's scripts need from our tokens.
pub(crate) fn hook_is_safe() -> Result<(), String> {
    for h in HOOK {
        if let Some(p) = FORBIDDEN_PREFIXES.iter().find(|p| h.starts_with(*p)) {
            return Err(format!("token {h} starts with {p}"));
        }
        if h.contains("firstboot") {
            return Err(format!("token {h} contains firstboot"));
        }
    }
    Ok(())
}

/// The settings a user gives for the Pi's first boot, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) hostname: Option<String>,
    pub(crate) user: Option<User>,
    pub(crate) wifi: Option<Wifi>,
    pub(crate) timezone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub(crate) name: String,
    /// SHA-512 crypt (`$6$...`), or `*` (no password: key login only).
    pub(crate) hash: String,
    /// `authorized_keys` lines.
    pub(crate) keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wifi {
    pub(crate) ssid: String,
    /// The WPA PSK: 64 hex digits, derived from the passphrase and SSID (never the passphrase).
    pub(crate) psk: String,
    pub(crate) country: String,
}

/// A host name: one DNS label (what `/etc/hostname` and mDNS `NAME.local` take).
pub(crate) fn check_hostname(h: &str) -> Result<String, String> {
    let ok = !h.is_empty()
        && h.len() <= 63
        && h.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !h.starts_with('-')
        && !h.ends_with('-');
    if ok {
        Ok(h.to_string())
    } else {
        Err(format!(
            "--hostname {h:?}: use 1-63 of a-z, 0-9 and -, not starting or ending with -"
        ))
    }
}

/// A login name as Debian's `adduser` takes it by default.
pub(crate) fn check_user(u: &str) -> Result<String, String> {
    let mut bytes = u.bytes();
    let ok = u.len() <= 32
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && u != "root";
    if ok {
        Ok(u.to_string())
    } else {
        Err(format!(
            "--user {u:?}: use a-z, 0-9, _ and - (starting with a letter or _), at most 32, not root"
        ))
    }
}

/// A tz database name (`Europe/Berlin`, `UTC`, `America/Argentina/Buenos_Aires`).
pub(crate) fn check_timezone(tz: &str) -> Result<String, String> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b))
    };
    if tz.len() <= 64 && tz.split('/').all(part_ok) {
        Ok(tz.to_string())
    } else {
        Err(format!(
            "--timezone {tz:?}: give a tz database name such as Europe/Berlin or UTC"
        ))
    }
}

/// Wi-Fi settings; the passphrase (8-63 printable ASCII, or a 64-hex-digit PSK) is turned into
/// the PSK here and not kept.
pub(crate) fn wifi(ssid: &str, passphrase: &str, country: &str) -> Result<Wifi, String> {
    if ssid.is_empty() || ssid.len() > 32 || ssid.chars().any(char::is_control) {
        return Err(format!(
            "--wifi-ssid {ssid:?}: 1-32 bytes, no control characters"
        ));
    }
    let country = country.to_ascii_uppercase();
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "--wifi-country {country:?}: give the two-letter ISO 3166 code (DE, GB, US...)"
        ));
    }
    let psk = if passphrase.len() == 64 && passphrase.bytes().all(|b| b.is_ascii_hexdigit()) {
        passphrase.to_ascii_lowercase()
    } else if (8..=63).contains(&passphrase.len())
        && passphrase.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        let mut key = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<sha1::Sha1>(passphrase.as_bytes(), ssid.as_bytes(), 4096, &mut key);
        hex::encode(key)
    } else {
        // The passphrase itself is never part of a message.
        return Err(
            "--wifi-password-file: a WPA passphrase is 8 to 63 printable ASCII characters (or 64 hex digits)"
                .into(),
        );
    };
    Ok(Wifi {
        ssid: ssid.to_string(),
        psk,
        country,
    })
}

/// `authorized_keys` lines from a public key file: comments and blank lines dropped; anything
/// that is not a public key (a private key given by mistake, above all) refused.
pub(crate) fn ssh_keys(text: &str) -> Result<Vec<String>, String> {
    const TYPES: [&str; 6] = [
        "ssh-ed25519 ",
        "ssh-rsa ",
        "ecdsa-sha2-nistp",
        "sk-ssh-ed25519@openssh.com ",
        "sk-ecdsa-sha2-nistp256@openssh.com ",
        "ssh-dss ",
    ];
    let keys: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if keys.is_empty() {
        return Err("--ssh-key: the file holds no public key".into());
    }
    for (i, k) in keys.iter().enumerate() {
        if !TYPES.iter().any(|t| k.starts_with(t)) || k.chars().any(char::is_control) {
            return Err(format!(
                "--ssh-key: key {} is not a public key line (ssh-ed25519 AAAA... comment); give the .pub file",
                i + 1
            ));
        }
    }
    Ok(keys)
}

/// The password as `openssl passwd -6` writes it: SHA-512 crypt, random salt, 5000 rounds.
pub(crate) fn hash_password(password: &str) -> Result<String, String> {
    let params = sha_crypt::Sha512Params::new(sha_crypt::ROUNDS_DEFAULT)
        .map_err(|_| "SHA-512 crypt parameters".to_string())?;
    sha_crypt::sha512_simple(password, &params).map_err(|_| "hashing the password failed".into())
}

/// A password file's content: one line, its newline dropped; empty refused.
pub(crate) fn password_from_file(text: &str) -> Result<String, String> {
    let p = text
        .strip_suffix('\n')
        .map_or(text, |t| t.strip_suffix('\r').unwrap_or(t));
    if p.is_empty() || p.contains('\n') {
        return Err("the password file must hold one non-empty line".into());
    }
    Ok(p.to_string())
}

/// Single-quoted for sh: nothing inside is special.
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A YAML double-quoted scalar (validated values hold no control characters).
fn yaml(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `userconf.txt` (Bookworm): `user:hash`, read once by userconfig.service and deleted.
pub(crate) fn userconf(user: &User) -> String {
    format!("{}:{}\n", user.name, user.hash)
}

/// Groups Raspberry Pi Imager gives the first user.
const GROUPS: &str =
    "users,adm,dialout,audio,netdev,video,plugdev,cdrom,games,input,gpio,spi,i2c,render,sudo";

/// cloud-init `user-data` (Trixie).
pub(crate) fn user_data(s: &Settings) -> String {
    let mut y = String::from("#cloud-config\n# Written by `pi-setup image`.\n");
    if let Some(h) = &s.hostname {
        let _ = writeln!(y, "hostname: {}\nmanage_etc_hosts: true", yaml(h));
    }
    if let Some(tz) = &s.timezone {
        let _ = writeln!(y, "timezone: {}", yaml(tz));
    }
    if let Some(u) = &s.user {
        let _ = writeln!(y, "users:\n  - name: {}", yaml(&u.name));
        let _ = writeln!(y, "    groups: {GROUPS}\n    shell: /bin/bash");
        let _ = writeln!(y, "    sudo: \"ALL=(ALL) NOPASSWD:ALL\"");
        if u.hash == "*" {
            y.push_str("    lock_passwd: true\n");
        } else {
            let _ = writeln!(y, "    lock_passwd: false\n    passwd: {}", yaml(&u.hash));
        }
        if !u.keys.is_empty() {
            y.push_str("    ssh_authorized_keys:\n");
            for k in &u.keys {
                let _ = writeln!(y, "      - {}", yaml(k));
            }
        }
        let _ = writeln!(
            y,
            "enable_ssh: true\nssh_pwauth: {}",
            u.hash != "*" && u.keys.is_empty()
        );
    }
    y
}

/// cloud-init `meta-data`: a new instance ID per bake, so cloud-init runs for this one.
pub(crate) fn meta_data(instance: &str) -> String {
    format!("instance-id: {}\n", yaml(instance))
}

/// cloud-init `network-config` (netplan v2): wired DHCP as before, plus the Wi-Fi network.
pub(crate) fn network_config(w: &Wifi) -> String {
    format!(
        "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n      optional: true\n  wifis:\n    wlan0:\n      dhcp4: true\n      optional: true\n      regulatory-domain: {}\n      access-points:\n        {}:\n          password: {}\n",
        yaml(&w.country),
        yaml(&w.ssid),
        yaml(&w.psk)
    )
}

/// NetworkManager's keyfile for the Wi-Fi network (Bookworm, written by the bootstrap).
fn nmconnection(w: &Wifi) -> String {
    // The SSID as a list of bytes: as a keyfile string, leading or trailing spaces would be
    // dropped, and `\` or `;` read as escapes or list separators.
    let ssid = w.ssid.bytes().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b};");
        s
    });
    format!(
        "[connection]\nid=pi-setup-wifi\ntype=wifi\nautoconnect=true\n\n[wifi]\nmode=infrastructure\nssid={}\n\n[wifi-security]\nkey-mgmt=wpa-psk\npsk={}\n\n[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=auto\n",
        ssid, w.psk
    )
}

const BOOTSTRAP: &str = include_str!("bootstrap.sh");
const INSTALL: &str = include_str!("install.sh");

/// The bootstrap script with this bake's settings. On a cloud-init image the settings are in
/// cloud-init's files, so the script's own part for them is empty.
pub(crate) fn bootstrap(s: &Settings, native_cloud_init: bool) -> String {
    let mut settings = String::new();
    if !native_cloud_init {
        if let Some(h) = &s.hostname {
            let _ = writeln!(settings, "set_hostname {}", sh_quote(h));
        }
        if let Some(tz) = &s.timezone {
            let _ = writeln!(settings, "set_timezone {}", sh_quote(tz));
        }
        if let Some(u) = s.user.as_ref().filter(|u| !u.keys.is_empty()) {
            let keys = u.keys.join("\n") + "\n";
            let _ = writeln!(
                settings,
                "set_ssh_keys {} {}",
                sh_quote(&u.name),
                sh_quote(&keys)
            );
        }
        if let Some(w) = &s.wifi {
            let _ = writeln!(
                settings,
                "set_wifi {} {}",
                sh_quote(&nmconnection(w)),
                sh_quote(&w.country)
            );
        }
    }
    if settings.is_empty() {
        settings.push_str(":\n");
    }
    BOOTSTRAP.replace("@SETTINGS@\n", &settings)
}

/// The script pi-setup-firstboot.service runs: `pi-setup install` with the baked profile,
/// logging to the journal and to install.log; `restore` is the `--restore-from` step.
pub(crate) fn install_script(restore: Option<&str>) -> String {
    INSTALL.replace(
        "@RESTORE@\n",
        &restore.map_or_else(|| ":\n".to_string(), |r| format!("{r}\n")),
    )
}

#[cfg(test)]
mod tests {
    use super::{
        add_hook, bootstrap, check_hostname, check_timezone, check_user, has_hook, hash_password,
        hook_is_safe, network_config, password_from_file, remove_hook, sh_quote, ssh_keys,
        user_data, userconf, wifi, Settings, User, HOOK,
    };

    const STOCK: &str = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n";

    #[test]
    fn the_hook_is_appended_once_and_removed_exactly() {
        let once = add_hook(STOCK).unwrap();
        assert_eq!(once, format!("{} {}\n", STOCK.trim_end(), HOOK.join(" ")));
        assert_eq!(
            add_hook(&once).unwrap(),
            once,
            "baking twice appends nothing"
        );
        assert!(has_hook(&once) && !has_hook(STOCK));
        assert_eq!(remove_hook(&once), STOCK);
        // No trailing newline and a second line the firmware ignores are kept; a CR on the first
        // line is dropped, or the bootstrap's `sed` would leave the last hook token (the Pi
        // would then boot into kernel-command-line.target forever).
        let bare = STOCK.trim_end();
        assert_eq!(
            add_hook(bare).unwrap(),
            format!("{bare} {}", HOOK.join(" "))
        );
        let crlf = format!("{bare}\r\n# note\n");
        assert_eq!(
            add_hook(&crlf).unwrap(),
            format!("{bare} {}\n# note\n", HOOK.join(" "))
        );
        assert!(add_hook("console=tty1 systemd.run=/boot/firstrun.sh\n")
            .unwrap_err()
            .contains("systemd.run=/boot/firstrun.sh"));
        assert!(add_hook("\n").is_err());
    }

    #[test]
    fn no_hook_token_is_one_raspberry_pi_os_scripts_would_edit() {
        hook_is_safe().unwrap();
        for t in HOOK {
            assert!(!t.contains("firstboot"), "{t}");
        }
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(check_hostname("pi-1").unwrap(), "pi-1");
        for bad in [
            "",
            "-a",
            "a-",
            "Pi",
            "a.b",
            "a b",
            &"a".repeat(64),
            "a;reboot",
        ] {
            assert!(check_hostname(bad).is_err(), "{bad:?}");
        }
        assert!(check_user("pi").is_ok() && check_user("_svc-1").is_ok());
        for bad in ["", "root", "1pi", "Pi", "a b", "a'b", &"a".repeat(33)] {
            assert!(check_user(bad).is_err(), "{bad:?}");
        }
        for good in [
            "UTC",
            "Europe/Berlin",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+1",
        ] {
            assert!(check_timezone(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../etc/passwd",
            "Europe//Berlin",
            "Europe/Ber lin",
            "/UTC",
            "a'b",
        ] {
            assert!(check_timezone(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn wifi_keeps_the_derived_psk_not_the_passphrase() {
        // IEEE 802.11i test vector: "password" on SSID "IEEE".
        let w = wifi("IEEE", "password", "de").unwrap();
        assert_eq!(
            w.psk,
            "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"
        );
        assert_eq!(w.country, "DE");
        assert!(wifi("IEEE", "short", "DE").unwrap_err().contains("8 to 63"));
        assert!(!wifi("IEEE", "short", "DE").unwrap_err().contains("short"));
        assert!(wifi("", "password", "DE").is_err());
        assert!(wifi("a\nb", "password", "DE").is_err());
        assert!(wifi("IEEE", "password", "DEU").is_err());
        let hex = "F42C6FC52DF0EBEF9EBB4B90B38A5F902E83FE1B135A70E23AED762E9710A12E";
        assert_eq!(wifi("IEEE", hex, "DE").unwrap().psk, w.psk);
    }

    #[test]
    fn passwords_are_sha512_crypt_hashes() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$6$"), "{h}");
        assert!(sha_crypt::sha512_check("s3cret", &h).is_ok());
        assert!(sha_crypt::sha512_check("other", &h).is_err());
        // What `openssl passwd -6 -salt saltsalt s3cret` prints is the same scheme.
        let openssl = "$6$saltsalt$As4wrv0kZlfch1du9WeH7qhskyLriQWySXrZzynnvi46nFnNxjdpl6ksRegrrKexvhIa/Iny8S8uF3fVWTMuC1";
        assert!(sha_crypt::sha512_check("s3cret", openssl).is_ok());
        assert_eq!(password_from_file("pw\n").unwrap(), "pw");
        assert_eq!(password_from_file("pw\r\n").unwrap(), "pw");
        assert!(password_from_file("\n").is_err());
        assert!(password_from_file("a\nb\n").is_err());
    }

    #[test]
    fn public_keys_only() {
        let k = ssh_keys("# mine\nssh-ed25519 AAAAC3Nza me@laptop\n\n").unwrap();
        assert_eq!(k, ["ssh-ed25519 AAAAC3Nza me@laptop"]);
        assert!(ssh_keys("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n").is_err());
        assert!(ssh_keys("\n# nothing\n").is_err());
    }

    fn settings() -> Settings {
        Settings {
            hostname: Some("appliance".into()),
            user: Some(User {
                name: "pi".into(),
                hash: "$6$salt$hash".into(),
                keys: vec!["ssh-ed25519 AAAA \"me\"".into()],
            }),
            wifi: Some(wifi("Home \"net\"", "password1", "DE").unwrap()),
            timezone: Some("Europe/Berlin".into()),
        }
    }

    #[test]
    fn cloud_init_files_quote_every_value() {
        let s = settings();
        insta::assert_snapshot!(user_data(&s));
        insta::assert_snapshot!(network_config(s.wifi.as_ref().unwrap()));
        assert_eq!(userconf(s.user.as_ref().unwrap()), "pi:$6$salt$hash\n");
    }

    #[test]
    fn the_bootstrap_carries_settings_only_where_cloud_init_does_not() {
        let s = settings();
        let b = bootstrap(&s, false);
        assert!(b.contains("set_hostname 'appliance'\n"));
        assert!(b.contains("set_timezone 'Europe/Berlin'\n"));
        assert!(b.contains("set_ssh_keys 'pi' 'ssh-ed25519 AAAA \"me\"\n'\n"));
        // "Home \"net\"" as bytes.
        assert!(
            b.contains("ssid=72;111;109;101;32;34;110;101;116;34;\n"),
            "{b}"
        );
        assert!(!b.contains("password1"));
        let c = bootstrap(&s, true);
        assert!(!c.contains("set_hostname '") && !c.contains("@SETTINGS@"));
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
    }
}
