//! The object store shell: puts and gets over any [`ObjectStore`], one
//! attempt each. Deciding to retry is the client core's job (a failed put
//! is retried under a fresh id by the machines, a bounded number of
//! times); retries of one HTTP request with backoff are the remote
//! `object_store` client's (its `RetryConfig`). A transient failure comes
//! back as the retryable [`FloeError::StoreUnavailable`].

use std::fmt;
use std::path::Path as FsPath;
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

use floe_protocol::{ArrayMeta, FloeError, ObjectId, RepoName};

use crate::format::{self, Manifest, ObjectKind};

/// Where a repo's objects live: a shared handle on an [`ObjectStore`].
/// Cloning is cheap and clones share the store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    description: String,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("store", &self.description)
            .finish()
    }
}

fn store_err(what: impl fmt::Display, e: impl fmt::Display) -> FloeError {
    FloeError::Store(format!("{what}: {e}"))
}

/// A transient failure is retryable ([`FloeError::StoreUnavailable`]) so
/// the caller's policy decides. Errors that only an operator can mend (no
/// such bucket, refused credentials) say so in plain words.
fn final_err(what: impl fmt::Display, e: object_store::Error) -> FloeError {
    let text = short(&e.to_string());
    if let Some(hint) = hint(&e, &text) {
        return FloeError::Store(format!("{what}: {hint} ({text})"));
    }
    if transient(&e) {
        FloeError::StoreUnavailable(format!("{what}: {}{text}", unreachable_hint(&text)))
    } else {
        store_err(what, text)
    }
}

/// An S3 error's text without the XML body it quotes, keeping its code.
fn short(text: &str) -> String {
    let Some(at) = text.find("<?xml") else {
        return text.to_string();
    };
    let head = text[..at].trim_end().trim_end_matches(':');
    match xml_element(&text[at..], "Code") {
        Some(code) => format!("{head}: {code}"),
        None => head.to_string(),
    }
}

/// The text of the first `<name>…</name>` in `xml`.
fn xml_element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(&xml[start..start + len])
}

/// The plain-words reading of an error an operator has to mend.
fn hint(e: &object_store::Error, text: &str) -> Option<&'static str> {
    if text.contains("NoSuchBucket") || text.contains("bucket does not exist") {
        return Some("the bucket does not exist");
    }
    // Without credentials in the environment or options, the S3 client
    // asks the EC2 instance metadata endpoint for some.
    if text.contains("169.254.169.254") {
        return Some("no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or run where instance credentials exist)");
    }
    match e {
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            Some("access denied: check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...) and the bucket's policy")
        }
        _ if text.contains("SignatureDoesNotMatch") || text.contains("InvalidAccessKeyId") => {
            Some("the credentials were refused (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
        }
        _ => None,
    }
}

/// Names a connection failure as such: object_store's text for it is a
/// long chain ending in the OS error.
fn unreachable_hint(text: &str) -> &'static str {
    let unreachable = [
        "error sending request",
        "Connection refused",
        "dns error",
        "timed out",
    ];
    if unreachable.iter().any(|s| text.contains(s)) {
        "the store is unreachable: "
    } else {
        ""
    }
}

/// Whether an object_store error may go away on retry.
fn transient(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
    )
}

/// Local and in-memory stores take no options: say so rather than ignore
/// them.
fn no_options(text: &str, options: &[(String, String)]) -> Result<(), FloeError> {
    match options.first() {
        None => Ok(()),
        Some((key, _)) => Err(FloeError::Store(format!(
            "store option {key:?} given for {text}, which takes none (options are for s3://, gs://, az://)"
        ))),
    }
}

#[cfg(feature = "cloud")]
mod cloud {
    //! Opening cloud stores: the environment first, then explicit options;
    //! bounded retries and timeouts so an unreachable store fails in
    //! seconds, not in object_store's default of minutes.

    use std::sync::Arc;
    use std::time::Duration;

    use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
    use object_store::{ObjectStore, RetryConfig};

    use super::store_err;
    use floe_protocol::FloeError;

    /// One request is retried this often within this long; a failed put is
    /// tried again, under a fresh id, by the client core.
    fn retry() -> RetryConfig {
        RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(15),
            ..RetryConfig::default()
        }
    }

    /// An S3 (or S3-compatible) bucket: `AWS_*` variables, then `options`.
    pub(super) fn s3(url: &url::Url, options: &[(String, String)]) -> Result<AmazonS3, FloeError> {
        let mut builder = AmazonS3Builder::from_env()
            .with_url(url.as_str())
            .with_retry(retry())
            .with_config(
                AmazonS3ConfigKey::Client(object_store::ClientConfigKey::ConnectTimeout),
                "5s",
            )
            .with_config(
                AmazonS3ConfigKey::Client(object_store::ClientConfigKey::Timeout),
                "60s",
            );
        for (key, value) in options {
            let parsed: AmazonS3ConfigKey = key
                .to_ascii_lowercase()
                .parse()
                .map_err(|_| FloeError::Store(format!("{url}: unknown S3 store option {key:?}")))?;
            builder = builder.with_config(parsed, value);
        }
        builder
            .build()
            .map_err(|e| store_err(format!("cannot open {url}"), e))
    }

    /// `gs://` and `az://`: object_store's own URL parsing with the
    /// `GOOGLE_*` / `AZURE_*` variables, then `options`.
    pub(super) fn other(
        url: &url::Url,
        options: &[(String, String)],
    ) -> Result<Arc<dyn ObjectStore>, FloeError> {
        let env = std::env::vars().filter_map(|(k, v)| {
            let lower = k.to_ascii_lowercase();
            ["google_", "azure_"]
                .iter()
                .any(|p| lower.starts_with(p))
                .then_some((lower, v))
        });
        let given = options
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()));
        let (store, _prefix) = object_store::parse_url_opts(url, env.chain(given))
            .map_err(|e| store_err(format!("cannot open {url}"), e))?;
        Ok(Arc::from(store))
    }
}

impl Store {
    /// Wraps any object store.
    pub fn with_object_store(store: Arc<dyn ObjectStore>) -> Self {
        let description = store.to_string();
        Store {
            inner: store,
            description,
        }
    }

    /// A fresh, empty in-memory store (tests, demos). Only clones of this
    /// `Store` share its contents.
    pub fn memory() -> Self {
        Self::with_object_store(Arc::new(InMemory::new()))
    }

    /// A store in a local directory, created if missing.
    pub fn local(dir: impl AsRef<FsPath>) -> Result<Self, FloeError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .map_err(|e| store_err(format!("cannot create {}", dir.display()), e))?;
        let fs = LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| store_err(format!("cannot open {}", dir.display()), e))?
            .with_automatic_cleanup(true);
        Ok(Self::with_object_store(Arc::new(fs)))
    }

    /// A store from a URL:
    ///
    /// * `file:///abs/path` — a local directory (created if missing); a
    ///   string without `://` is taken as a local path too;
    /// * `memory://` — a fresh in-memory store;
    /// * with the `cloud` feature, `s3://bucket/prefix` (S3 and
    ///   S3-compatible servers), `gs://…` and `az://…`, configured from the
    ///   usual `AWS_*`, `GOOGLE_*` and `AZURE_*` environment variables.
    ///   Without the feature these are refused with an error saying to
    ///   rebuild with `--features cloud`.
    pub fn from_url(text: &str) -> Result<Self, FloeError> {
        Self::from_url_with(text, &[])
    }

    /// [`Store::from_url`] with object_store configuration `options`
    /// (`endpoint=http://127.0.0.1:9000`, `allow_http=true`, `region=…`;
    /// `aws_`-prefixed names too) that win over the environment's. An
    /// option the store does not know is refused, naming it; local and
    /// in-memory stores take none.
    pub fn from_url_with(text: &str, options: &[(String, String)]) -> Result<Self, FloeError> {
        if !text.contains("://") {
            no_options(text, options)?;
            return Self::local(text);
        }
        let url = url::Url::parse(text).map_err(|e| store_err(format!("bad URL {text:?}"), e))?;
        match url.scheme() {
            "file" => {
                no_options(text, options)?;
                let dir = url.to_file_path().map_err(|()| {
                    FloeError::Store(format!(
                        "bad file URL {text:?}: expected file:///absolute/path"
                    ))
                })?;
                Self::local(dir)
            }
            "memory" => {
                no_options(text, options)?;
                Ok(Self::memory())
            }
            "s3" | "s3a" | "gs" | "az" | "adl" | "azure" | "abfs" | "abfss" | "http" | "https" => {
                Self::cloud(&url, options)
            }
            _ => Err(FloeError::Store(format!(
                "{url}: unsupported store URL (expected file:///path, memory://, s3://, gs:// or az://)"
            ))),
        }
    }

    #[cfg(feature = "cloud")]
    fn cloud(url: &url::Url, options: &[(String, String)]) -> Result<Self, FloeError> {
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "s3" | "s3a" => Arc::new(cloud::s3(url, options)?),
            _ => cloud::other(url, options)?,
        };
        let prefix = Path::from_url_path(url.path())
            .map_err(|e| store_err(format!("bad path in {url}"), e))?;
        let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
            store
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
        };
        let mut store = Self::with_object_store(store);
        store.description = url.to_string();
        Ok(store)
    }

    #[cfg(not(feature = "cloud"))]
    fn cloud(url: &url::Url, _options: &[(String, String)]) -> Result<Self, FloeError> {
        Err(FloeError::Store(format!(
            "{url}: cloud object stores are not built in; rebuild with `--features cloud`"
        )))
    }

    /// Where this store is (its URL, or the object store's own name).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Checks that the store answers and lets us in: one listing of its
    /// root. An unreachable endpoint, a missing bucket or refused
    /// credentials come back as an error saying which, so a command fails
    /// before it writes anything rather than on its first chunk.
    pub async fn probe(&self) -> Result<(), FloeError> {
        match self.inner.list_with_delimiter(None).await {
            Ok(_) => Ok(()),
            Err(e) => Err(final_err(
                format!("cannot use the store {}", self.description),
                e,
            )),
        }
    }

    /// The wrapped object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// Writes an object. Objects are immutable and written under fresh
    /// ids, so a put tried again is harmless.
    pub async fn put_raw(&self, key: &Path, bytes: Vec<u8>) -> Result<(), FloeError> {
        let payload = PutPayload::from(bytes);
        match self.inner.put(key, payload).await {
            Ok(_) => Ok(()),
            Err(e) => Err(final_err(format!("put {key}"), e)),
        }
    }

    /// Reads a whole object; `None` when there is no such object.
    pub async fn get_opt(&self, key: &Path) -> Result<Option<Vec<u8>>, FloeError> {
        let result = match self.inner.get(key).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(bytes) => Ok(Some(bytes.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(final_err(format!("get {key}"), e)),
        }
    }

    /// Reads a whole object; a missing object is an error.
    pub async fn get_raw(&self, key: &Path) -> Result<Vec<u8>, FloeError> {
        self.get_opt(key)
            .await?
            .ok_or_else(|| FloeError::Store(format!("get {key}: no such object")))
    }

    /// Writes chunk `id`: encodes the full chunk buffer with `meta.codec`.
    pub async fn put_chunk(
        &self,
        repo: &RepoName,
        meta: &ArrayMeta,
        id: ObjectId,
        buffer: &[u8],
    ) -> Result<(), FloeError> {
        let object = format::encode_chunk(meta, buffer)?;
        self.put_raw(&format::chunk_key(repo, id), object).await
    }

    /// Reads chunk `id` and decodes it into a full chunk buffer of `meta`.
    pub async fn get_chunk(
        &self,
        repo: &RepoName,
        meta: &ArrayMeta,
        id: ObjectId,
    ) -> Result<Vec<u8>, FloeError> {
        let object = self.get_raw(&format::chunk_key(repo, id)).await?;
        format::decode_chunk(meta, &object)
            .map_err(|e| FloeError::Codec(format!("chunk {repo}/chunks/{id}: {e}")))
    }

    async fn put_manifest_kind(
        &self,
        repo: &RepoName,
        kind: ObjectKind,
        id: ObjectId,
        manifest: &Manifest,
    ) -> Result<(), FloeError> {
        let bytes = manifest.encode()?;
        self.put_raw(&format::object_key(repo, kind, id), bytes)
            .await
    }

    async fn get_manifest_kind(
        &self,
        repo: &RepoName,
        kind: ObjectKind,
        id: ObjectId,
    ) -> Result<Manifest, FloeError> {
        let key = format::object_key(repo, kind, id);
        let bytes = self.get_raw(&key).await?;
        Manifest::decode(&bytes).map_err(|e| FloeError::Codec(format!("{key}: {e}")))
    }

    /// Writes delta manifest `id`.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        id: ObjectId,
        manifest: &Manifest,
    ) -> Result<(), FloeError> {
        self.put_manifest_kind(repo, ObjectKind::Manifest, id, manifest)
            .await
    }

    /// Reads delta manifest `id`.
    pub async fn get_manifest(&self, repo: &RepoName, id: ObjectId) -> Result<Manifest, FloeError> {
        self.get_manifest_kind(repo, ObjectKind::Manifest, id).await
    }

    /// Writes checkpoint `id`.
    pub async fn put_checkpoint(
        &self,
        repo: &RepoName,
        id: ObjectId,
        manifest: &Manifest,
    ) -> Result<(), FloeError> {
        self.put_manifest_kind(repo, ObjectKind::Checkpoint, id, manifest)
            .await
    }

    /// Reads checkpoint `id`.
    pub async fn get_checkpoint(
        &self,
        repo: &RepoName,
        id: ObjectId,
    ) -> Result<Manifest, FloeError> {
        self.get_manifest_kind(repo, ObjectKind::Checkpoint, id)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_protocol::DType;

    fn repo() -> RepoName {
        RepoName::new("r").unwrap()
    }

    async fn round_trip(store: &Store) {
        let meta = ArrayMeta::new(vec![10], vec![4], DType::U16, 0.0).unwrap();
        let buf: Vec<u8> = (0..8).collect();
        store
            .put_chunk(&repo(), &meta, ObjectId(1), &buf)
            .await
            .unwrap();
        assert_eq!(
            store.get_chunk(&repo(), &meta, ObjectId(1)).await.unwrap(),
            buf
        );
        let mut man = Manifest::new();
        man.insert(
            floe_protocol::ArrayPath::new("/a").unwrap(),
            vec![2],
            ObjectId(1),
        );
        store
            .put_manifest(&repo(), ObjectId(2), &man)
            .await
            .unwrap();
        store
            .put_checkpoint(&repo(), ObjectId(3), &man)
            .await
            .unwrap();
        assert_eq!(store.get_manifest(&repo(), ObjectId(2)).await.unwrap(), man);
        assert_eq!(
            store.get_checkpoint(&repo(), ObjectId(3)).await.unwrap(),
            man
        );
        // Kinds live in separate folders.
        assert!(matches!(
            store.get_checkpoint(&repo(), ObjectId(2)).await,
            Err(FloeError::Store(_))
        ));
        assert!(matches!(
            store.get_chunk(&repo(), &meta, ObjectId(9)).await,
            Err(FloeError::Store(_))
        ));
    }

    #[tokio::test]
    async fn memory_url_works() {
        round_trip(&Store::from_url("memory://").unwrap()).await;
    }

    #[tokio::test]
    async fn file_url_creates_the_directory_and_lays_out_objects() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested/store");
        let url = format!("file://{}", dir.display());
        let store = Store::from_url(&url).unwrap();
        round_trip(&store).await;
        let chunk = dir.join("r/chunks").join(ObjectId(1).to_string());
        assert!(chunk.is_file(), "{} missing", chunk.display());
        assert!(dir
            .join("r/manifests")
            .join(ObjectId(2).to_string())
            .is_file());
        assert!(dir
            .join("r/checkpoints")
            .join(ObjectId(3).to_string())
            .is_file());
        // A second store on the same directory sees the objects.
        let again = Store::from_url(dir.to_str().unwrap()).unwrap();
        let man = again.get_manifest(&repo(), ObjectId(2)).await.unwrap();
        assert_eq!(man.len(), 1);
    }

    #[tokio::test]
    async fn garbage_objects_are_codec_errors() {
        let store = Store::memory();
        let meta = ArrayMeta::new(vec![10], vec![4], DType::U16, 0.0).unwrap();
        let key = format::chunk_key(&repo(), ObjectId(5));
        store.put_raw(&key, b"not a chunk".to_vec()).await.unwrap();
        assert!(matches!(
            store.get_chunk(&repo(), &meta, ObjectId(5)).await,
            Err(FloeError::Codec(_))
        ));
        let key = format::manifest_key(&repo(), ObjectId(5));
        store.put_raw(&key, vec![1, 0xff, 0xff]).await.unwrap();
        assert!(matches!(
            store.get_manifest(&repo(), ObjectId(5)).await,
            Err(FloeError::Codec(_))
        ));
    }

    /// An in-memory store whose first `failures` puts fail transiently.
    #[derive(Debug)]
    struct Flaky {
        inner: InMemory,
        failures: std::sync::atomic::AtomicU32,
        puts: std::sync::atomic::AtomicU32,
    }

    impl fmt::Display for Flaky {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Flaky")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Flaky {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: object_store::PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            use std::sync::atomic::Ordering::SeqCst;
            self.puts.fetch_add(1, SeqCst);
            if self
                .failures
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(object_store::Error::Generic {
                    store: "Flaky",
                    source: "connection reset".into(),
                });
            }
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &Path,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            self.inner.get_opts(location, options).await
        }
        async fn delete(&self, location: &Path) -> object_store::Result<()> {
            self.inner.delete(location).await
        }
        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
        {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<object_store::ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy(&self, from: &Path, to: &Path) -> object_store::Result<()> {
            self.inner.copy(from, to).await
        }
        async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
            self.inner.copy_if_not_exists(from, to).await
        }
    }

    fn flaky(failures: u32) -> (Arc<Flaky>, Store) {
        let f = Arc::new(Flaky {
            inner: InMemory::new(),
            failures: failures.into(),
            puts: 0.into(),
        });
        let store = Store::with_object_store(f.clone());
        (f, store)
    }

    #[tokio::test]
    async fn a_transient_failure_is_tried_once_and_comes_back_retryable() {
        use std::sync::atomic::Ordering::SeqCst;
        let key = Path::from("r/chunks/x");
        let (f, store) = flaky(1);
        let err = store.put_raw(&key, vec![1]).await.unwrap_err();
        assert!(
            matches!(err, FloeError::StoreUnavailable(ref m) if m.contains("connection reset"))
        );
        assert!(err.is_retryable());
        assert_eq!(f.puts.load(SeqCst), 1, "the shell does not retry");
        store.put_raw(&key, vec![1, 2, 3]).await.unwrap();
        assert_eq!(store.get_raw(&key).await.unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn s3_error_bodies_shrink_to_their_code() {
        let text = "Error performing GET http://h/b in 3ms - Server returned non-2xx status code: \
                    404 Not Found: <?xml version=\"1.0\"?>\n<Error><Code>NoSuchBucket</Code>\
                    <Message>The specified bucket does not exist</Message></Error>";
        assert_eq!(
            short(text),
            "Error performing GET http://h/b in 3ms - Server returned non-2xx status code: \
             404 Not Found: NoSuchBucket"
        );
        assert_eq!(short("plain"), "plain");
        let e = object_store::Error::Generic {
            store: "S3",
            source: text.into(),
        };
        let err = final_err("put r/chunks/1", e);
        assert!(!err.is_retryable(), "a missing bucket is not retried");
        assert!(
            err.to_string().contains("the bucket does not exist"),
            "{err}"
        );
    }

    #[test]
    fn refused_credentials_and_unreachable_stores_say_so() {
        let denied = object_store::Error::PermissionDenied {
            path: "x".into(),
            source: "403 Forbidden".into(),
        };
        let err = final_err("get x", denied);
        assert!(err.to_string().contains("check the credentials"), "{err}");
        let down = object_store::Error::Generic {
            store: "S3",
            source: "HTTP error: error sending request".into(),
        };
        let err = final_err("get x", down);
        assert!(err.is_retryable());
        assert!(err.to_string().contains("unreachable"), "{err}");
    }

    #[test]
    fn local_stores_take_no_options() {
        let options = [("endpoint".to_string(), "http://x".to_string())];
        let err = Store::from_url_with("memory://", &options).unwrap_err();
        assert!(err.to_string().contains("takes none"), "{err}");
    }

    #[test]
    fn bad_urls_are_clear_errors() {
        let err = Store::from_url("file://relative-host/x").unwrap_err();
        assert!(err.to_string().contains("file:///"), "{err}");
        let err = Store::from_url("ftp://host/x").unwrap_err();
        assert!(err.to_string().contains("unsupported"), "{err}");
    }

    #[cfg(feature = "cloud")]
    #[test]
    fn cloud_urls_open_with_the_cloud_feature() {
        let store = Store::from_url("s3://bucket/some/prefix").unwrap();
        let text = format!("{store:?}");
        assert!(text.contains("s3://bucket/some/prefix"), "{text}");
        let options = [("endpointt".to_string(), "http://x".to_string())];
        let err = Store::from_url_with("s3://bucket", &options).unwrap_err();
        assert!(err.to_string().contains("unknown S3 store option"), "{err}");
    }

    #[cfg(not(feature = "cloud"))]
    #[test]
    fn cloud_urls_need_the_cloud_feature() {
        for url in ["s3://bucket/prefix", "gs://bucket", "az://container/x"] {
            let err = Store::from_url(url).unwrap_err();
            assert!(matches!(err, FloeError::Store(_)));
            assert!(err.to_string().contains("--features cloud"), "{url}: {err}");
        }
    }
}
