//! The S3 seam: a blocking client for the few S3 calls off-device copies need (list, head,
//! put, get, copy, delete, and multipart uploads with their listing), against any
//! S3-compatible server. rusty-s3 signs each request (a presigned URL, SigV4) and parses S3's
//! XML; ureq sends it (rustls with ring, Mozilla's root certificates built in, since a Pi's
//! CA store cannot be relied on). Nothing else in the crate talks HTTP.
//!
//! Secrets: the credentials file is read when a command needs it (never kept in the model),
//! must be a regular file private to its owner, and neither its contents nor a signed URL
//! (which carries the access key id and a signature) ever reaches an error message: errors
//! name the bucket and key, the HTTP status and S3's own error code and message.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusty_s3::actions::{
    CompleteMultipartUpload, CreateMultipartUpload, ListObjectsV2, ListParts, S3Action,
};
use rusty_s3::{Bucket, UrlStyle};

/// How long a signed request stays valid: a slow part upload on a Pi's uplink must fit in it.
const SIGNED_FOR: Duration = Duration::from_hours(1);

#[derive(Debug, thiserror::Error)]
pub(crate) enum S3Error {
    #[error("S3 credentials file {}: {why}", path.display())]
    Credentials { path: PathBuf, why: String },
    #[error("S3 endpoint {endpoint}: {why}")]
    Endpoint { endpoint: String, why: String },
    /// The server answered with an error status.
    #[error(
        "S3 {action} s3://{bucket}/{key}: HTTP {status}{}",
        s3_says(code, message)
    )]
    Status {
        action: &'static str,
        bucket: String,
        key: String,
        status: u16,
        code: String,
        message: String,
    },
    /// No answer (connection refused, DNS, TLS, timeout) or a cut one.
    #[error("S3 {action} s3://{bucket}/{key}: {why}")]
    Transport {
        action: &'static str,
        bucket: String,
        key: String,
        why: String,
    },
    /// An answer that is not what S3 answers.
    #[error("S3 {action} s3://{bucket}/{key}: unexpected answer: {why}")]
    Answer {
        action: &'static str,
        bucket: String,
        key: String,
        why: String,
    },
}

fn s3_says(code: &str, message: &str) -> String {
    match (code.is_empty(), message.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!(" {code}"),
        (true, false) => format!(": {message}"),
        (false, false) => format!(" {code}: {message}"),
    }
}

impl S3Error {
    /// The server says the credentials are wrong (unknown key, bad signature) or not allowed.
    pub(crate) fn is_denied(&self) -> bool {
        matches!(
            self,
            S3Error::Status {
                status: 401 | 403,
                ..
            }
        )
    }

    pub(crate) fn is_no_bucket(&self) -> bool {
        matches!(self, S3Error::Status { code, .. } if code == "NoSuchBucket")
    }
}

/// An access key id and its secret, read from the credentials file.
pub(crate) struct Credentials(rusty_s3::Credentials);

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(..)")
    }
}

impl Credentials {
    /// Reads a credentials file: `access_key_id = ...` and `secret_access_key = ...` lines
    /// (`#` comments and blank lines allowed; values may be quoted; `AWS_ACCESS_KEY_ID=...`
    /// and `AWS_SECRET_ACCESS_KEY=...` also work, so an env file can serve). It must be a
    /// regular file that only its owner can read (mode 0600 or 0400). Errors never quote it.
    pub(crate) fn read(path: &Path) -> Result<Credentials, S3Error> {
        let bad = |why: String| S3Error::Credentials {
            path: path.to_path_buf(),
            why,
        };
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| bad(format!("cannot open it: {e}")))?;
        let meta = f
            .metadata()
            .map_err(|e| bad(format!("cannot read it: {e}")))?;
        if !meta.is_file() {
            return Err(bad("is not a regular file".to_string()));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(bad(format!(
                "has mode {:04o}: it holds a secret, make it 0600 (chmod 600 {})",
                meta.mode() & 0o7777,
                path.display()
            )));
        }
        let mut text = String::new();
        f.take(64 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| bad(format!("cannot read it as text: {e}")))?;
        let (mut key, mut secret) = (None, None);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                return Err(bad(format!(
                    "line {} is not `name = value` (expected access_key_id and secret_access_key)",
                    n + 1
                )));
            };
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            match name.trim().to_ascii_lowercase().as_str() {
                "access_key_id" | "aws_access_key_id" => key = Some(value.to_string()),
                "secret_access_key" | "aws_secret_access_key" => secret = Some(value.to_string()),
                other => {
                    return Err(bad(format!(
                        "line {}: unknown name {other:?} (expected access_key_id and \
                         secret_access_key)",
                        n + 1
                    )))
                }
            }
        }
        match (key, secret) {
            (Some(k), Some(s)) if !k.is_empty() && !s.is_empty() => {
                Ok(Credentials(rusty_s3::Credentials::new(k, s)))
            }
            _ => Err(bad(
                "needs both access_key_id = ... and secret_access_key = ... lines".to_string(),
            )),
        }
    }
}

/// An object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Object {
    pub(crate) key: String,
    pub(crate) size: u64,
}

/// What HEAD says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) size: u64,
    /// Without quotes.
    pub(crate) etag: String,
    /// `x-amz-meta-sha256`, as this client stores it with every upload.
    pub(crate) sha256: Option<String>,
}

/// A part of a multipart upload the server holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) number: u16,
    /// Without quotes: the hex MD5 of the part's bytes.
    pub(crate) etag: String,
    pub(crate) size: u64,
}

/// One bucket of one server, with the credentials to use it.
pub(crate) struct Client {
    bucket: Bucket,
    credentials: Credentials,
    agent: ureq::Agent,
}

impl Client {
    pub(crate) fn new(
        endpoint: &str,
        virtual_host: bool,
        bucket: &str,
        region: &str,
        credentials: Credentials,
    ) -> Result<Client, S3Error> {
        let bad = |why: String| S3Error::Endpoint {
            endpoint: endpoint.to_string(),
            why,
        };
        let url = url::Url::parse(endpoint).map_err(|e| bad(e.to_string()))?;
        let style = if virtual_host {
            UrlStyle::VirtualHost
        } else {
            UrlStyle::Path
        };
        let bucket = Bucket::new(url, style, bucket.to_string(), region.to_string())
            .map_err(|e| bad(e.to_string()))?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(20)))
            // A part that does not move for this long is a dead connection.
            .timeout_recv_response(Some(Duration::from_mins(5)))
            .timeout_recv_body(Some(Duration::from_mins(5)))
            .timeout_send_body(Some(Duration::from_mins(5)))
            .build()
            .new_agent();
        Ok(Client {
            bucket,
            credentials,
            agent,
        })
    }

    pub(crate) fn bucket(&self) -> &str {
        self.bucket.name()
    }

    /// rusty-s3 signs only when given credentials: always, here.
    #[allow(clippy::unnecessary_wraps)]
    fn creds(&self) -> Option<&rusty_s3::Credentials> {
        Some(&self.credentials.0)
    }

    fn transport(&self, action: &'static str, key: &str) -> impl FnOnce(ureq::Error) -> S3Error {
        let (bucket, key) = (self.bucket().to_string(), key.to_string());
        move |e| S3Error::Transport {
            action,
            bucket,
            key,
            why: describe(&e),
        }
    }

    fn answer(&self, action: &'static str, key: &str, why: impl fmt::Display) -> S3Error {
        S3Error::Answer {
            action,
            bucket: self.bucket().to_string(),
            key: key.to_string(),
            why: why.to_string(),
        }
    }

    /// Turns an error status into an `S3Error` with S3's code and message; passes others.
    fn check(
        &self,
        action: &'static str,
        key: &str,
        mut resp: ureq::http::Response<ureq::Body>,
    ) -> Result<ureq::http::Response<ureq::Body>, S3Error> {
        let status = resp.status().as_u16();
        if status < 300 {
            return Ok(resp);
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .unwrap_or_default();
        Err(S3Error::Status {
            action,
            bucket: self.bucket().to_string(),
            key: key.to_string(),
            status,
            code: xml_text(&body, "Code").unwrap_or_default(),
            message: xml_text(&body, "Message").unwrap_or_default(),
        })
    }

    fn get_text(&self, action: &'static str, key: &str, url: &url::Url) -> Result<String, S3Error> {
        let resp = self
            .agent
            .get(url.as_str())
            .call()
            .map_err(self.transport(action, key))?;
        let mut resp = self.check(action, key, resp)?;
        resp.body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(self.transport(action, key))
    }

    /// Checks the bucket is there and the credentials open it.
    pub(crate) fn check_bucket(&self) -> Result<(), S3Error> {
        // ListObjectsV2 rather than HEAD: an error body says why (HEAD has none).
        let mut list = self.bucket.list_objects_v2(self.creds());
        list.with_max_keys(1);
        let url = list.sign(SIGNED_FOR);
        self.get_text("list", "", &url).map(|_| ())
    }

    /// Every object whose key starts with `prefix`, in key order.
    pub(crate) fn list(&self, prefix: &str) -> Result<Vec<Object>, S3Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut list = self.bucket.list_objects_v2(self.creds());
            list.with_prefix(prefix);
            if let Some(t) = &token {
                list.with_continuation_token(t.clone());
            }
            let url = list.sign(SIGNED_FOR);
            let text = self.get_text("list", prefix, &url)?;
            let page =
                ListObjectsV2::parse_response(&text).map_err(|e| self.answer("list", prefix, e))?;
            out.extend(page.contents.into_iter().map(|c| Object {
                key: c.key,
                size: c.size.unwrap_or(0),
            }));
            match page.next_continuation_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// `None` when there is no such object.
    pub(crate) fn head(&self, key: &str) -> Result<Option<Head>, S3Error> {
        let url = self.bucket.head_object(self.creds(), key).sign(SIGNED_FOR);
        let resp = self
            .agent
            .head(url.as_str())
            .call()
            .map_err(self.transport("head", key))?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        let resp = self.check("head", key, resp)?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let size = header("content-length")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.answer("head", key, "no Content-Length"))?;
        Ok(Some(Head {
            size,
            etag: header("etag")
                .unwrap_or_default()
                .trim_matches('"')
                .to_string(),
            sha256: header("x-amz-meta-sha256"),
        }))
    }

    /// Uploads `bytes` as one object, with its sha256 as `x-amz-meta-sha256`.
    pub(crate) fn put(&self, key: &str, bytes: &[u8], sha256: &str) -> Result<(), S3Error> {
        let mut put = self.bucket.put_object(self.creds(), key);
        put.headers_mut()
            .insert("x-amz-meta-sha256", sha256.to_string());
        let url = put.sign(SIGNED_FOR);
        let resp = self
            .agent
            .put(url.as_str())
            .header("x-amz-meta-sha256", sha256)
            .send(bytes)
            .map_err(self.transport("upload", key))?;
        self.check("upload", key, resp).map(|_| ())
    }

    /// Copies `from` to `to` inside the bucket, on the server (metadata included).
    pub(crate) fn copy(&self, from: &str, to: &str) -> Result<(), S3Error> {
        let source = format!("/{}/{}", self.bucket(), encode_key(from));
        let mut put = self.bucket.put_object(self.creds(), to);
        put.headers_mut()
            .insert("x-amz-copy-source", source.clone());
        let url = put.sign(SIGNED_FOR);
        let resp = self
            .agent
            .put(url.as_str())
            .header("x-amz-copy-source", &source)
            .send_empty()
            .map_err(self.transport("copy", to))?;
        let mut resp = self.check("copy", to, resp)?;
        // A copy can fail after its 200 has been sent: the error is then in the body.
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        match xml_text(&body, "Code") {
            Some(code) => Err(S3Error::Status {
                action: "copy",
                bucket: self.bucket().to_string(),
                key: to.to_string(),
                status: 200,
                code,
                message: xml_text(&body, "Message").unwrap_or_default(),
            }),
            None => Ok(()),
        }
    }

    /// Writes the object's bytes to `out`; returns how many.
    pub(crate) fn get(&self, key: &str, out: &mut dyn Write) -> Result<u64, S3Error> {
        let url = self.bucket.get_object(self.creds(), key).sign(SIGNED_FOR);
        let resp = self
            .agent
            .get(url.as_str())
            .call()
            .map_err(self.transport("download", key))?;
        let mut resp = self.check("download", key, resp)?;
        let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
        io::copy(&mut reader, out).map_err(|e| S3Error::Transport {
            action: "download",
            bucket: self.bucket().to_string(),
            key: key.to_string(),
            why: e.to_string(),
        })
    }

    /// Deletes an object; one already gone is not an error.
    pub(crate) fn delete(&self, key: &str) -> Result<(), S3Error> {
        let url = self
            .bucket
            .delete_object(self.creds(), key)
            .sign(SIGNED_FOR);
        let resp = self
            .agent
            .delete(url.as_str())
            .call()
            .map_err(self.transport("delete", key))?;
        if resp.status().as_u16() == 404 {
            return Ok(());
        }
        self.check("delete", key, resp).map(|_| ())
    }

    /// Starts a multipart upload of `key` (with `x-amz-meta-sha256`); returns its id.
    pub(crate) fn start_upload(&self, key: &str, sha256: &str) -> Result<String, S3Error> {
        let mut create = self.bucket.create_multipart_upload(self.creds(), key);
        create
            .headers_mut()
            .insert("x-amz-meta-sha256", sha256.to_string());
        let url = create.sign(SIGNED_FOR);
        let resp = self
            .agent
            .post(url.as_str())
            .header("x-amz-meta-sha256", sha256)
            .send_empty()
            .map_err(self.transport("start upload", key))?;
        let mut resp = self.check("start upload", key, resp)?;
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(self.transport("start upload", key))?;
        let created = CreateMultipartUpload::parse_response(&body)
            .map_err(|e| self.answer("start upload", key, e))?;
        Ok(created.upload_id().to_string())
    }

    /// The ids of unfinished multipart uploads of exactly `key`, oldest first.
    pub(crate) fn uploads(&self, key: &str) -> Result<Vec<String>, S3Error> {
        // rusty-s3 has no ListMultipartUploads: sign it with its own signer.
        let url = rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            rusty_s3::Method::Get,
            self.bucket.base_url().clone(),
            self.credentials.0.key(),
            self.credentials.0.secret(),
            None,
            self.bucket.region(),
            SIGNED_FOR.as_secs(),
            [("prefix", key), ("uploads", "")].into_iter(),
            std::iter::empty(),
        );
        let text = self.get_text("list uploads", key, &url)?;
        Ok(xml_blocks(&text, "Upload")
            .filter(|u| xml_text(u, "Key").as_deref() == Some(key))
            .filter_map(|u| xml_text(u, "UploadId"))
            .collect())
    }

    /// The parts an unfinished upload holds, by number.
    pub(crate) fn parts(&self, key: &str, upload: &str) -> Result<Vec<Part>, S3Error> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let mut list = self.bucket.list_parts(self.creds(), key, upload);
            if let Some(m) = marker {
                list.set_part_number_marker(m);
            }
            let url = list.sign(SIGNED_FOR);
            let text = self.get_text("list parts", key, &url)?;
            let page =
                ListParts::parse_response(&text).map_err(|e| self.answer("list parts", key, e))?;
            out.extend(page.parts.into_iter().map(|p| Part {
                number: p.number,
                etag: p.etag.trim_matches('"').to_string(),
                size: p.size,
            }));
            match page.next_part_number_marker {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        out.sort_by_key(|p| p.number);
        Ok(out)
    }

    /// Uploads part `number` (from 1); returns the ETag the server gave it, without quotes.
    pub(crate) fn upload_part(
        &self,
        key: &str,
        upload: &str,
        number: u16,
        bytes: &[u8],
    ) -> Result<String, S3Error> {
        let url = self
            .bucket
            .upload_part(self.creds(), key, number, upload)
            .sign(SIGNED_FOR);
        let resp = self
            .agent
            .put(url.as_str())
            .send(bytes)
            .map_err(self.transport("upload part", key))?;
        let resp = self.check("upload part", key, resp)?;
        Ok(resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim_matches('"')
            .to_string())
    }

    /// Completes an upload from its parts' ETags, in part order.
    pub(crate) fn complete(
        &self,
        key: &str,
        upload: &str,
        etags: &[String],
    ) -> Result<(), S3Error> {
        let quoted: Vec<String> = etags.iter().map(|e| format!("\"{e}\"")).collect();
        let action = CompleteMultipartUpload::new(
            &self.bucket,
            self.creds(),
            key,
            upload,
            quoted.iter().map(String::as_str),
        );
        let url = action.sign(SIGNED_FOR);
        let body = action.body();
        let resp = self
            .agent
            .post(url.as_str())
            .send(body.as_bytes())
            .map_err(self.transport("complete upload", key))?;
        let mut resp = self.check("complete upload", key, resp)?;
        // Like a copy, a completion can fail after its 200.
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        match xml_text(&text, "Code") {
            Some(code) => Err(S3Error::Status {
                action: "complete upload",
                bucket: self.bucket().to_string(),
                key: key.to_string(),
                status: 200,
                code,
                message: xml_text(&text, "Message").unwrap_or_default(),
            }),
            None => Ok(()),
        }
    }

    /// Drops an unfinished upload and its parts.
    pub(crate) fn abort(&self, key: &str, upload: &str) -> Result<(), S3Error> {
        let url = self
            .bucket
            .abort_multipart_upload(self.creds(), key, upload)
            .sign(SIGNED_FOR);
        let resp = self
            .agent
            .delete(url.as_str())
            .call()
            .map_err(self.transport("abort upload", key))?;
        if resp.status().as_u16() == 404 {
            return Ok(());
        }
        self.check("abort upload", key, resp).map(|_| ())
    }
}

/// A transport error without the request's URL (a signed URL carries the access key id).
fn describe(e: &ureq::Error) -> String {
    let text = e.to_string();
    match text.find("http") {
        Some(at) if text[at..].contains("X-Amz-") => format!("{}(URL withheld)", &text[..at]),
        _ => text,
    }
}

/// A key as it goes into `x-amz-copy-source`: each segment percent-encoded, '/' kept.
fn encode_key(key: &str) -> String {
    key.split('/')
        .map(|s| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
                .replace("%2D", "-")
                .replace("%2E", ".")
                .replace("%5F", "_")
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The text of the first `<tag>` element in `xml`, unescaped.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(unescape(&xml[start..end]))
}

/// The contents of each `<tag>...</tag>` element in `xml`.
fn xml_blocks<'a>(xml: &'a str, tag: &str) -> impl Iterator<Item = &'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut rest = xml;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let end = start + rest[start..].find(&close)?;
        let block = &rest[start..end];
        rest = &rest[end + close.len()..];
        Some(block)
    })
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::{encode_key, unescape, xml_blocks, xml_text, Credentials, S3Error};

    #[test]
    fn credentials_files_are_read_only_when_private_and_never_quoted() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("b2.s3");
        let write = |text: &str, mode: u32| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(
            "# Backblaze\naccess_key_id = \"K0001\"\nsecret_access_key = s3cr3t-V4lue\n",
            0o600,
        );
        let c = Credentials::read(&path).unwrap();
        assert_eq!((c.0.key(), c.0.secret()), ("K0001", "s3cr3t-V4lue"));
        assert_eq!(format!("{c:?}"), "Credentials(..)");
        write(
            "AWS_ACCESS_KEY_ID=K0001\nAWS_SECRET_ACCESS_KEY=s3cr3t-V4lue\n",
            0o400,
        );
        assert!(Credentials::read(&path).is_ok());

        for (text, mode, says) in [
            (
                "access_key_id = K\nsecret_access_key = s3cr3t-V4lue\n",
                0o644,
                "has mode 0644",
            ),
            ("access_key_id = K\n", 0o600, "needs both"),
            ("s3cr3t-V4lue\n", 0o600, "line 1 is not `name = value`"),
            (
                "password = s3cr3t-V4lue\n",
                0o600,
                "unknown name \"password\"",
            ),
        ] {
            write(text, mode);
            let e = Credentials::read(&path).unwrap_err();
            assert!(matches!(e, S3Error::Credentials { .. }));
            let msg = e.to_string();
            assert!(msg.contains(says), "{msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(!msg.contains("s3cr3t"), "{msg}");
        }
        let e = Credentials::read(&tmp.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("cannot open it"), "{e}");
        std::os::unix::fs::symlink(&path, tmp.path().join("link")).unwrap();
        assert!(Credentials::read(&tmp.path().join("link")).is_err());
    }

    #[test]
    fn s3_xml_answers_are_read_without_a_parser() {
        let xml = "<ListMultipartUploadsResult><Upload><Key>a/b&amp;c</Key><UploadId>1</UploadId>\
                   </Upload><Upload><Key>a/x</Key><UploadId>2</UploadId></Upload>\
                   </ListMultipartUploadsResult>";
        let uploads: Vec<(String, String)> = xml_blocks(xml, "Upload")
            .map(|u| {
                (
                    xml_text(u, "Key").unwrap(),
                    xml_text(u, "UploadId").unwrap(),
                )
            })
            .collect();
        assert_eq!(
            uploads,
            [("a/b&c".into(), "1".into()), ("a/x".into(), "2".into())]
        );
        assert_eq!(unescape("&amp;lt;"), "&lt;");
        assert_eq!(encode_key("home/app/app-1.tar.gz"), "home/app/app-1.tar.gz");
        assert_eq!(encode_key("a b/c+d"), "a%20b/c%2Bd");
    }
}
