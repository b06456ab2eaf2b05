//! Pushing a built image to a registry through the OCI distribution API:
//! blobs by monolithic upload (`POST /v2/<repo>/blobs/uploads/`, then `PUT <location>
//! ?digest=`) unless the registry has them (`HEAD`), the manifest by its digest, then the
//! index under the tag. Authentication as registries ask for it on `GET /v2/`: none,
//! basic, or a bearer token fetched from the challenge's realm (with the credentials, if
//! any) for `repository:<repo>:pull,push`. HTTPS by default (system roots, through
//! rustls); `plain_http` for local registries.

use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use tokio::io::AsyncReadExt;

use super::layout::Built;
use super::{Descriptor, Reference};

type Body = BoxBody<Bytes, std::io::Error>;

/// For requests without a large body.
const SHORT: Duration = Duration::from_secs(120);
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// How to reach the registry.
#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    /// `http://` instead of `https://`.
    pub plain_http: bool,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// What a push did.
#[derive(Clone, Debug)]
pub struct Pushed {
    /// `host/repo:tag@sha256:...` of the index.
    pub reference: String,
    pub blobs_uploaded: usize,
    pub blobs_present: usize,
    pub bytes_uploaded: u64,
}

/// The registry credentials the container tools stored for `domain` (a reference's
/// registry, e.g. `quay.io`, `localhost:5000`, `docker.io`), and the file they came from:
/// `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json` (Podman, buildah,
/// skopeo), `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` (Docker). Only inline
/// `auth` entries (base64 `user:password`) are used; credential helpers are not run.
pub fn stored_credentials(domain: &str) -> Option<(String, String, std::path::PathBuf)> {
    let env = |k: &str| std::env::var_os(k).map(std::path::PathBuf::from);
    let mut files = Vec::new();
    files.extend(env("REGISTRY_AUTH_FILE"));
    files.extend(env("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")));
    files.extend(env("DOCKER_CONFIG").map(|d| d.join("config.json")));
    files.extend(env("HOME").map(|d| d.join(".docker/config.json")));
    files.into_iter().find_map(|f| {
        let text = std::fs::read(&f).ok()?;
        let json: serde_json::Value = serde_json::from_slice(&text).ok()?;
        let (user, pass) = credentials_in(&json, domain)?;
        Some((user, pass, f))
    })
}

/// `auths` entry for `domain` in an auth file's JSON.
pub fn credentials_in(json: &serde_json::Value, domain: &str) -> Option<(String, String)> {
    let hub = ["docker.io", "index.docker.io", "registry-1.docker.io"];
    let wanted = |key: &str| {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        host == domain || (hub.contains(&domain) && hub.contains(&host))
    };
    let auths = json.get("auths")?.as_object()?;
    auths.iter().filter(|(k, _)| wanted(k)).find_map(|(_, v)| {
        let encoded = v.get("auth")?.as_str()?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, pass) = decoded.split_once(':')?;
        Some((user.to_owned(), pass.to_owned()))
    })
}

/// HTTPS (and HTTP) through rustls with the system's roots; plain HTTP alone when a
/// plain-http push runs where no roots are installed.
enum Transport {
    Tls(Client<Connector, Body>),
    Plain(Client<HttpConnector, Body>),
}

impl Transport {
    async fn request(
        &self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        match self {
            Transport::Tls(c) => c.request(request).await,
            Transport::Plain(c) => c.request(request).await,
        }
    }
}

struct Registry {
    client: Transport,
    base: String,
    repo: String,
    options: PushOptions,
    /// The Authorization header once the registry asked for one.
    auth: Option<String>,
}

/// The parameters of a `WWW-Authenticate` challenge: scheme and `key="value"` pairs.
pub fn parse_challenge(value: &str) -> (String, Vec<(String, String)>) {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n)
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        params.push((key.trim().to_ascii_lowercase(), val.trim().to_owned()));
    }
    (scheme.to_ascii_lowercase(), params)
}

fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

fn empty() -> Body {
    full(Bytes::new())
}

async fn file_body(path: std::path::PathBuf, bar: indicatif::ProgressBar) -> anyhow::Result<Body> {
    let file = tokio::fs::File::open(&path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let chunks = futures_util::stream::unfold(Some(file), move |state| {
        let bar = bar.clone();
        async move {
            let mut file = state?;
            let mut buf = vec![0u8; 256 << 10];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    bar.inc(n as u64);
                    Some((Ok(Frame::data(Bytes::from(buf))), Some(file)))
                }
                Err(e) => Some((Err(e), None)),
            }
        }
    });
    Ok(StreamBody::new(chunks).boxed())
}

async fn text(response: Response<Incoming>) -> String {
    match response.into_body().collect().await {
        Ok(b) => {
            let b = b.to_bytes();
            String::from_utf8_lossy(&b[..b.len().min(2048)]).into_owned()
        }
        Err(e) => format!("(body unreadable: {e})"),
    }
}

impl Registry {
    fn new(target: &Reference, options: PushOptions) -> anyhow::Result<Registry> {
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_idle_timeout(Duration::from_secs(30));
        let client = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
            Ok(b) => Transport::Tls(builder.build(b.https_or_http().enable_http1().build())),
            Err(_) if options.plain_http => Transport::Plain(builder.build(HttpConnector::new())),
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context("loading the system's TLS root certificates (ca-certificates)"))
            }
        };
        let scheme = if options.plain_http { "http" } else { "https" };
        Ok(Registry {
            client,
            base: format!("{scheme}://{}", target.api_host()),
            repo: target.repository.clone(),
            options,
            auth: None,
        })
    }

    fn basic(&self) -> Option<String> {
        let user = self.options.username.as_deref()?;
        let pass = self.options.password.as_deref().unwrap_or("");
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        ))
    }

    async fn send_raw(
        &self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, String)],
        body: Body,
        auth: Option<&str>,
        timeout: Duration,
    ) -> anyhow::Result<Response<Incoming>> {
        let mut request = Request::builder().method(method.clone()).uri(url);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        if let Some(a) = auth {
            request = request.header(header::AUTHORIZATION, a);
        }
        let request = request
            .body(body)
            .with_context(|| format!("bad URL {url}"))?;
        tokio::time::timeout(timeout, self.client.request(request))
            .await
            .with_context(|| format!("{method} {url}: no answer in {} s", timeout.as_secs()))?
            .with_context(|| format!("{method} {url}"))
    }

    /// Answers the registry's challenge (a 401's `WWW-Authenticate`) by setting
    /// `self.auth`.
    async fn authenticate(&mut self, challenge: &str) -> anyhow::Result<()> {
        let (scheme, params) = parse_challenge(challenge);
        let param = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        match scheme.as_str() {
            "basic" => {
                self.auth = Some(self.basic().context(
                    "the registry wants a user name and password (--username, --password or --password-stdin)",
                )?);
            }
            "bearer" => {
                let realm = param("realm").context("bearer challenge without a realm")?;
                let scope = format!("repository:{}:pull,push", self.repo);
                let mut url = format!(
                    "{realm}{}scope={}",
                    if realm.contains('?') { '&' } else { '?' },
                    utf8_percent_encode(&scope, NON_ALPHANUMERIC)
                );
                if let Some(service) = param("service") {
                    url.push_str(&format!(
                        "&service={}",
                        utf8_percent_encode(&service, NON_ALPHANUMERIC)
                    ));
                }
                let basic = self.basic();
                let answer = self
                    .send_raw(Method::GET, &url, &[], empty(), basic.as_deref(), SHORT)
                    .await?;
                let status = answer.status();
                let body = text(answer).await;
                if !status.is_success() {
                    bail!("the registry's token service refused ({status}): {body}");
                }
                let json: serde_json::Value = serde_json::from_str(&body)
                    .with_context(|| format!("token service answer is not JSON: {body}"))?;
                let token = json["token"]
                    .as_str()
                    .or(json["access_token"].as_str())
                    .filter(|t| !t.is_empty())
                    .context("token service answer has no token")?;
                self.auth = Some(format!("Bearer {token}"));
            }
            other => bail!("the registry asks for unsupported authentication {other:?}"),
        }
        Ok(())
    }

    /// Sends a request, answering one authentication challenge and retrying with a fresh
    /// body from `body`.
    async fn send<F, Fut>(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, String)],
        body: F,
        timeout: Duration,
    ) -> anyhow::Result<Response<Incoming>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Body>>,
    {
        let answer = self
            .send_raw(
                method.clone(),
                url,
                headers,
                body().await?,
                self.auth.clone().as_deref(),
                timeout,
            )
            .await?;
        if answer.status() != StatusCode::UNAUTHORIZED {
            return Ok(answer);
        }
        let challenge = answer
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let had_auth = self.auth.is_some();
        let body_text = text(answer).await;
        let Some(challenge) = challenge else {
            bail!("{method} {url}: 401 without a challenge: {body_text}");
        };
        if had_auth && !challenge.to_ascii_lowercase().starts_with("bearer") {
            bail!("{method} {url}: the registry refused the credentials: {body_text}");
        }
        self.authenticate(&challenge).await?;
        self.send_raw(
            method,
            url,
            headers,
            body().await?,
            self.auth.clone().as_deref(),
            timeout,
        )
        .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repo)
    }

    async fn ping(&mut self) -> anyhow::Result<()> {
        let url = format!("{}/v2/", self.base);
        let answer = self
            .send(Method::GET, &url, &[], || async { Ok(empty()) }, SHORT)
            .await
            .with_context(|| format!("cannot reach the registry at {}", self.base))?;
        let status = answer.status();
        if !status.is_success() && status != StatusCode::NOT_FOUND {
            bail!("GET {url}: {status}: {}", text(answer).await);
        }
        Ok(())
    }

    async fn has_blob(&mut self, digest: &str) -> anyhow::Result<bool> {
        let url = self.url(&format!("blobs/{digest}"));
        let answer = self
            .send(Method::HEAD, &url, &[], || async { Ok(empty()) }, SHORT)
            .await?;
        Ok(answer.status().is_success())
    }

    async fn upload_blob(
        &mut self,
        desc: &Descriptor,
        path: std::path::PathBuf,
        bar: &indicatif::ProgressBar,
    ) -> anyhow::Result<()> {
        let url = self.url("blobs/uploads/");
        let answer = self
            .send(
                Method::POST,
                &url,
                &[(header::CONTENT_LENGTH, "0".into())],
                || async { Ok(empty()) },
                SHORT,
            )
            .await?;
        if answer.status() != StatusCode::ACCEPTED {
            let status = answer.status();
            bail!("POST {url}: {status}: {}", text(answer).await);
        }
        let location = answer
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .context("the registry started an upload without a Location")?
            .to_owned();
        let _ = text(answer).await;
        let location = if location.starts_with("http://") || location.starts_with("https://") {
            location
        } else {
            format!("{}{location}", self.base)
        };
        let put = format!(
            "{location}{}digest={}",
            if location.contains('?') { '&' } else { '?' },
            utf8_percent_encode(&desc.digest, NON_ALPHANUMERIC)
        );
        let start = bar.position();
        let answer = self
            .send(
                Method::PUT,
                &put,
                &[
                    (header::CONTENT_TYPE, "application/octet-stream".into()),
                    (header::CONTENT_LENGTH, desc.size.to_string()),
                ],
                || {
                    bar.set_position(start);
                    file_body(path.clone(), bar.clone())
                },
                // The answer comes once the whole blob is sent: allow 256 KiB/s.
                SHORT + Duration::from_secs(desc.size / (256 << 10)),
            )
            .await?;
        if answer.status() != StatusCode::CREATED {
            let status = answer.status();
            bail!(
                "uploading {} ({} bytes): {status}: {}",
                desc.digest,
                desc.size,
                text(answer).await
            );
        }
        Ok(())
    }

    async fn put_manifest(
        &mut self,
        reference: &str,
        media_type: &str,
        data: Bytes,
    ) -> anyhow::Result<String> {
        let url = self.url(&format!("manifests/{reference}"));
        let answer = self
            .send(
                Method::PUT,
                &url,
                &[
                    (header::CONTENT_TYPE, media_type.into()),
                    (header::CONTENT_LENGTH, data.len().to_string()),
                ],
                || {
                    let data = data.clone();
                    async move { Ok(full(data)) }
                },
                SHORT,
            )
            .await?;
        let status = answer.status();
        if status != StatusCode::CREATED && status != StatusCode::OK {
            bail!("PUT {url}: {status}: {}", text(answer).await);
        }
        Ok(answer
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned())
    }
}

/// Pushes `built` to `target` (its registry, repository and tag or digest).
pub async fn push(
    built: &Built,
    target: &Reference,
    options: PushOptions,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Pushed> {
    let mut registry = Registry::new(target, options)?;
    registry.ping().await?;
    let mut pushed = Pushed {
        reference: String::new(),
        blobs_uploaded: 0,
        blobs_present: 0,
        bytes_uploaded: 0,
    };
    for desc in [&built.layer, &built.config] {
        if registry.has_blob(&desc.digest).await? {
            pushed.blobs_present += 1;
            bar.inc(desc.size);
            continue;
        }
        let path = built.blob_path(&desc.digest)?;
        registry.upload_blob(desc, path, bar).await?;
        pushed.blobs_uploaded += 1;
        pushed.bytes_uploaded += desc.size;
    }
    let read = |d: &Descriptor| -> anyhow::Result<Bytes> {
        let path = built.blob_path(&d.digest)?;
        Ok(Bytes::from(std::fs::read(&path).with_context(|| {
            format!("cannot read {}", path.display())
        })?))
    };
    registry
        .put_manifest(
            &built.manifest.digest,
            &built.manifest.media_type,
            read(&built.manifest)?,
        )
        .await?;
    let object = target.object().to_owned();
    let answered = registry
        .put_manifest(&object, &built.index.media_type, read(&built.index)?)
        .await?;
    if !answered.is_empty() && answered != built.index.digest {
        bail!(
            "the registry stored the index as {answered}, not {}",
            built.index.digest
        );
    }
    pushed.reference = format!("{}@{}", target, built.index.digest);
    if target.digest.is_some() {
        pushed.reference = target.to_string();
    }
    Ok(pushed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_auth_files() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let json = serde_json::json!({ "auths": {
            "https://index.docker.io/v1/": { "auth": b64("hubuser:hub:pass") },
            "localhost:5000": { "auth": b64("me:secret") },
            "quay.io": { "identitytoken": "x" },
        }});
        assert_eq!(
            credentials_in(&json, "docker.io"),
            Some(("hubuser".into(), "hub:pass".into()))
        );
        assert_eq!(
            credentials_in(&json, "localhost:5000"),
            Some(("me".into(), "secret".into()))
        );
        assert_eq!(credentials_in(&json, "quay.io"), None);
        assert_eq!(credentials_in(&json, "localhost"), None);
    }

    #[test]
    fn challenges_are_parsed() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(
            p,
            vec![
                (
                    "realm".to_string(),
                    "https://auth.example/token".to_string()
                ),
                ("service".to_string(), "registry.example".to_string()),
                ("scope".to_string(), "repository:a/b:pull,push".to_string()),
            ]
        );
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(s, "basic");
        assert_eq!(p[0].1, "Registry Realm");
        let (s, p) = parse_challenge("Basic");
        assert_eq!((s.as_str(), p.len()), ("basic", 0));
    }
}
