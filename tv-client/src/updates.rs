//! Downloading a software update (SPEC D4/D5): in chunks with progress, resumed with a
//! range request after a dropped connection, then checked against the signed manifest
//! (size, SHA-256, the vendor's Ed25519 signature) before the state machine may install.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use protocol::{UpdateKey, UpdatePackage};
use sha2::{Digest, Sha256};

use crate::runtime::{Backend, Sink};
use crate::state::{DownloadOutcome, Failure, Input};

/// Attempts in a row that may fail (connect or drop) before the download gives up; any
/// progress starts the count again.
pub const DOWNLOAD_ATTEMPTS: u32 = 5;
/// Wait before the first resume; doubled per failure in a row.
pub const RESUME_DELAY_MS: u64 = 250;
/// How often progress is reported: every this many bytes.
const PROGRESS_STEP: u64 = 16 * 1024;
/// Largest package a TV keeps in memory.
pub const MAX_PACKAGE_BYTES: u64 = 512 * 1024 * 1024;

/// A download under way: whether the server resumed at the offset asked for (`206`) or
/// starts from the beginning (`200`), and the body in chunks.
pub struct Download {
    pub resumed: bool,
    pub chunks: BoxStream<'static, Result<Vec<u8>, Failure>>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("resumed", &self.resumed)
            .finish_non_exhaustive()
    }
}

/// Downloads and checks `package`, sending [`Input::DownloadProgress`] on the way and one
/// [`Input::DownloadFinished`] at the end.
pub async fn download_update<B: Backend>(
    backend: B,
    package: UpdatePackage,
    key: UpdateKey,
    sink: Sink,
) {
    let version = package.version.clone();
    let outcome = fetch_and_verify(&backend, &package, &key, &sink).await;
    tracing::info!(version = %version, ?outcome, "update download finished");
    sink(Input::DownloadFinished { version, outcome });
}

async fn fetch_and_verify<B: Backend>(
    backend: &B,
    package: &UpdatePackage,
    key: &UpdateKey,
    sink: &Sink,
) -> DownloadOutcome {
    if package.size > MAX_PACKAGE_BYTES {
        return DownloadOutcome::Rejected(format!("{} bytes is too large", package.size));
    }
    // The manifest first: a package the vendor did not sign is not even downloaded.
    if let Err(e) = key.verify_manifest(package) {
        return DownloadOutcome::Rejected(e.to_string());
    }
    let mut buf: Vec<u8> = Vec::with_capacity(package.size as usize);
    let mut failures = 0u32;
    let mut reported = 0u64;
    while (buf.len() as u64) < package.size {
        let why = match backend
            .download(package.url.clone(), buf.len() as u64)
            .await
        {
            Ok(mut d) => {
                if !d.resumed && !buf.is_empty() {
                    tracing::info!("the server restarted the download from the beginning");
                    buf.clear();
                }
                let mut why = None;
                while let Some(chunk) = d.chunks.next().await {
                    match chunk {
                        Ok(c) => {
                            buf.extend_from_slice(&c);
                            failures = 0;
                            if buf.len() as u64 > package.size {
                                return DownloadOutcome::Rejected(
                                    "more bytes than the signed size".into(),
                                );
                            }
                            let got = buf.len() as u64;
                            if got - reported >= PROGRESS_STEP || got == package.size {
                                reported = got;
                                sink(Input::DownloadProgress {
                                    version: package.version.clone(),
                                    received: got,
                                });
                            }
                        }
                        Err(f) => {
                            why = Some(f.message().to_owned());
                            break;
                        }
                    }
                }
                why.unwrap_or_else(|| "the connection closed early".into())
            }
            Err(Failure::Refused { message, .. }) => return DownloadOutcome::Unreachable(message),
            Err(f) => f.message().to_owned(),
        };
        if (buf.len() as u64) >= package.size {
            break;
        }
        failures += 1;
        tracing::warn!(received = buf.len(), attempt = failures, why = %why, "update download interrupted");
        if failures >= DOWNLOAD_ATTEMPTS {
            return DownloadOutcome::Unreachable(why);
        }
        let delay = RESUME_DELAY_MS.saturating_mul(1 << (failures - 1).min(6));
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let sha: [u8; 32] = Sha256::digest(&buf).into();
    match key.verify_download(package, buf.len() as u64, &sha) {
        Ok(()) => DownloadOutcome::Verified,
        Err(e) => DownloadOutcome::Rejected(e.to_string()),
    }
}
