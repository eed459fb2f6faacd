//! Frame sources (a live camera, or a "virtual camera" playing a folder of pictures or
//! recorded frames) and the background scan loop that decodes their frames.
//!
//! The loop is the same for both sources, so the tests exercise the exact code a phone
//! runs: a capture thread feeds a small queue, decode workers take frames from it, and
//! the first frame that yields an accepted QR text wins and stops everything.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image::GrayImage;

use crate::decode::{DecodeReport, Decoder, PictureError, picture_from_path};

/// Most pictures a virtual camera plays from one folder.
pub const MAX_FOLDER_FRAMES: usize = 10_000;
/// Most decode workers a scan runs (the machine's cores permitting).
pub const MAX_DECODE_WORKERS: usize = 4;
/// How often the scan loop reports progress, in milliseconds.
pub const PROGRESS_INTERVAL_MS: u64 = 250;

/// Why a frame source failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// No camera is attached (or none the platform backend can open).
    #[error("no camera found{}", if .0.is_empty() { String::new() } else { format!(": {}", .0) })]
    NoCamera(String),
    #[error("this build has no camera support; rebuild with `--features camera`")]
    CameraNotBuilt,
    #[error("camera error: {0}")]
    Camera(String),
    /// One picture of a virtual camera could not be read; the scan skips it.
    #[error(transparent)]
    Picture(#[from] PictureError),
    #[error("cannot list {path}: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} holds no PNG, JPEG or WebP pictures")]
    EmptyFolder(String),
}

impl FrameError {
    /// A bad single frame is skipped; anything else ends the scan.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Self::Picture(_))
    }
}

/// Something that produces grey frames to scan.
pub trait FrameSource: Send {
    /// Human-readable name for progress messages.
    fn describe(&self) -> String;
    /// True for a live camera: frames that arrive while the decoders are busy are
    /// dropped (a newer frame is more useful). Recorded sources keep every frame.
    fn is_live(&self) -> bool;
    /// The next frame; `Ok(None)` when the source has no more frames.
    fn next_frame(&mut self) -> Result<Option<GrayImage>, FrameError>;
}

/// A virtual camera: plays every PNG/JPEG/WebP picture in a folder once, in name order.
#[derive(Debug)]
pub struct FolderSource {
    folder: PathBuf,
    files: Vec<PathBuf>,
    next: usize,
}

impl FolderSource {
    pub fn open(folder: &Path) -> Result<Self, FrameError> {
        let err = |source| FrameError::Folder {
            path: folder.display().to_string(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(folder).map_err(err)? {
            let path = entry.map_err(err)?.path();
            if is_picture_name(&path) {
                files.push(path);
            }
            if files.len() >= MAX_FOLDER_FRAMES {
                break;
            }
        }
        if files.is_empty() {
            return Err(FrameError::EmptyFolder(folder.display().to_string()));
        }
        files.sort();
        Ok(Self {
            folder: folder.to_owned(),
            files,
            next: 0,
        })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

fn is_picture_name(path: &Path) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg" | "webp"))
}

impl FrameSource for FolderSource {
    fn describe(&self) -> String {
        format!(
            "virtual camera {} ({} frames)",
            self.folder.display(),
            self.files.len()
        )
    }

    fn is_live(&self) -> bool {
        false
    }

    fn next_frame(&mut self) -> Result<Option<GrayImage>, FrameError> {
        let Some(path) = self.files.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        Ok(Some(picture_from_path(path)?))
    }
}

/// In-memory frames, for tests and benchmarks.
#[derive(Debug)]
pub struct MemorySource {
    frames: std::vec::IntoIter<GrayImage>,
    live: bool,
}

impl MemorySource {
    pub fn new(frames: Vec<GrayImage>, live: bool) -> Self {
        Self {
            frames: frames.into_iter(),
            live,
        }
    }
}

impl FrameSource for MemorySource {
    fn describe(&self) -> String {
        format!("{} frames in memory", self.frames.len())
    }
    fn is_live(&self) -> bool {
        self.live
    }
    fn next_frame(&mut self) -> Result<Option<GrayImage>, FrameError> {
        Ok(self.frames.next())
    }
}

/// Progress of a scan, reported about every [`PROGRESS_INTERVAL_MS`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanProgress {
    pub frames_captured: u64,
    pub frames_decoded: u64,
    pub frames_skipped: u64,
    pub elapsed: Duration,
}

/// The winning frame of a scan.
#[derive(Clone, Debug)]
pub struct ScanHit {
    pub text: String,
    /// 0-based index of the frame that decoded.
    pub frame: u64,
    pub report: DecodeReport,
    pub progress: ScanProgress,
}

/// How a scan ended without a hit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    #[error(transparent)]
    Source(FrameError),
    #[error("no Couchpay QR code found in {frames} frames")]
    NotFound { frames: u64 },
    #[error("no Couchpay QR code found within {0:?}")]
    TimedOut(Duration),
    #[error("scan cancelled")]
    Cancelled,
}

/// Limits of one scan.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    pub timeout: Duration,
    pub workers: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            timeout: Duration::from_secs(60),
            workers: cores.clamp(1, MAX_DECODE_WORKERS),
        }
    }
}

enum Outcome {
    Hit(Box<ScanHit>),
    SourceEnded,
    Failed(FrameError),
}

/// Scans `source` until a frame yields a QR text that `accept` likes.
///
/// Frames are captured on one thread and decoded on `options.workers` others; the
/// first accepted decode wins. `cancel` stops the scan from outside (e.g. the GUI's
/// Back button); `progress` is called from this thread.
pub fn scan(
    mut source: Box<dyn FrameSource>,
    decoder: &Decoder,
    accept: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    options: &ScanOptions,
    cancel: &AtomicBool,
    mut progress: impl FnMut(&ScanProgress),
) -> Result<ScanHit, ScanError> {
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let captured = Arc::new(AtomicU64::new(0));
    let decoded = Arc::new(AtomicU64::new(0));
    let skipped = Arc::new(AtomicU64::new(0));
    let workers = options.workers.clamp(1, MAX_DECODE_WORKERS);
    // A queue no longer than the worker count: a live camera drops frames instead of
    // building a backlog of stale ones; a recorded source waits for a free worker.
    let (frame_tx, frame_rx) = mpsc::sync_channel::<(u64, GrayImage)>(workers);
    let frame_rx = Arc::new(Mutex::new(frame_rx));
    let (out_tx, out_rx) = mpsc::channel::<Outcome>();
    let live = source.is_live();

    std::thread::scope(|s| {
        {
            let (stop, captured, skipped, out_tx) = (
                stop.clone(),
                captured.clone(),
                skipped.clone(),
                out_tx.clone(),
            );
            s.spawn(move || {
                capture(
                    &mut *source,
                    live,
                    &frame_tx,
                    &stop,
                    &captured,
                    &skipped,
                    &out_tx,
                )
            });
        }
        let mut handles = Vec::new();
        for _ in 0..workers {
            let (frame_rx, stop, decoded, out_tx, accept) = (
                frame_rx.clone(),
                stop.clone(),
                decoded.clone(),
                out_tx.clone(),
                accept.clone(),
            );
            handles.push(s.spawn(move || {
                loop {
                    let next = {
                        let rx = frame_rx.lock().unwrap_or_else(|p| p.into_inner());
                        rx.recv()
                    };
                    let Ok((index, frame)) = next else { break };
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let report = decoder.decode(&frame, &*accept);
                    decoded.fetch_add(1, Ordering::Relaxed);
                    if let Some(text) = report.text.clone() {
                        let hit = ScanHit {
                            text,
                            frame: index,
                            report,
                            progress: ScanProgress::default(),
                        };
                        let _ = out_tx.send(Outcome::Hit(Box::new(hit)));
                        break;
                    }
                }
            }));
        }
        drop(out_tx);

        let snapshot = || ScanProgress {
            frames_captured: captured.load(Ordering::Relaxed),
            frames_decoded: decoded.load(Ordering::Relaxed),
            frames_skipped: skipped.load(Ordering::Relaxed),
            elapsed: start.elapsed(),
        };
        let mut source_ended = false;
        let result = loop {
            if cancel.load(Ordering::Relaxed) {
                break Err(ScanError::Cancelled);
            }
            if start.elapsed() >= options.timeout {
                break Err(ScanError::TimedOut(options.timeout));
            }
            match out_rx.recv_timeout(Duration::from_millis(PROGRESS_INTERVAL_MS)) {
                Ok(Outcome::Hit(mut hit)) => {
                    hit.progress = snapshot();
                    break Ok(*hit);
                }
                Ok(Outcome::Failed(e)) => break Err(ScanError::Source(e)),
                Ok(Outcome::SourceEnded) => source_ended = true,
                Err(RecvTimeoutError::Timeout) => progress(&snapshot()),
                // Every worker and the capture thread are gone without a hit: the
                // recorded source was fully decoded.
                Err(RecvTimeoutError::Disconnected) => {
                    break Err(ScanError::NotFound {
                        frames: captured.load(Ordering::Relaxed),
                    });
                }
            }
            if source_ended && handles.iter().all(|h| h.is_finished()) {
                // Drain a hit that raced with the last worker finishing.
                if let Ok(Outcome::Hit(mut hit)) = out_rx.try_recv() {
                    hit.progress = snapshot();
                    break Ok(*hit);
                }
                break Err(ScanError::NotFound {
                    frames: captured.load(Ordering::Relaxed),
                });
            }
        };
        stop.store(true, Ordering::Relaxed);
        // Unblock workers waiting for frames: the capture thread drops the sender
        // when it sees `stop`; workers drain what is queued without decoding it.
        progress(&snapshot());
        result
    })
}

fn capture(
    source: &mut dyn FrameSource,
    live: bool,
    frame_tx: &SyncSender<(u64, GrayImage)>,
    stop: &AtomicBool,
    captured: &AtomicU64,
    skipped: &AtomicU64,
    out_tx: &mpsc::Sender<Outcome>,
) {
    let mut index = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match source.next_frame() {
            Ok(Some(frame)) => {
                captured.fetch_add(1, Ordering::Relaxed);
                let mut item = (index, frame);
                index += 1;
                if live {
                    if let Err(TrySendError::Full(_)) = frame_tx.try_send(item) {
                        skipped.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                // Recorded frames wait for a worker, checking `stop` now and then.
                loop {
                    match frame_tx.try_send(item) {
                        Ok(()) => break,
                        Err(TrySendError::Full(back)) => {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            item = back;
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Err(TrySendError::Disconnected(_)) => return,
                    }
                }
            }
            Ok(None) => {
                let _ = out_tx.send(Outcome::SourceEnded);
                return;
            }
            Err(e) if e.is_fatal() => {
                let _ = out_tx.send(Outcome::Failed(e));
                return;
            }
            Err(e) => {
                tracing::warn!("skipping a frame: {e}");
                skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(feature = "camera")]
pub use camera::CameraSource;

#[cfg(feature = "camera")]
mod camera {
    //! The live camera through nokhwa. nokhwa's camera is not `Send`, so it lives on its
    //! own thread and hands frames over a one-slot channel (newest frame wins).

    use std::sync::mpsc::{self, Receiver, TrySendError};
    use std::time::Duration;

    use image::GrayImage;
    use nokhwa::pixel_format::LumaFormat;
    use nokhwa::utils::{ApiBackend, CameraIndex, RequestedFormat, RequestedFormatType};

    use super::{FrameError, FrameSource};

    /// Longest wait for the camera to open or deliver a frame, in milliseconds.
    const CAMERA_TIMEOUT_MS: u64 = 5_000;

    /// A live camera opened through nokhwa's native backend (V4L2 on Linux).
    #[derive(Debug)]
    pub struct CameraSource {
        frames: Receiver<Result<GrayImage, FrameError>>,
        name: String,
    }

    fn open_camera(index: u32) -> Result<(nokhwa::Camera, String), FrameError> {
        let cameras =
            nokhwa::query(ApiBackend::Auto).map_err(|e| FrameError::NoCamera(e.to_string()))?;
        if cameras.is_empty() {
            return Err(FrameError::NoCamera(
                "the system lists no video devices (/dev/video*)".into(),
            ));
        }
        let requested =
            RequestedFormat::new::<LumaFormat>(RequestedFormatType::AbsoluteHighestResolution);
        let mut camera = nokhwa::Camera::new(CameraIndex::Index(index), requested)
            .map_err(|e| FrameError::NoCamera(format!("camera {index}: {e}")))?;
        camera
            .open_stream()
            .map_err(|e| FrameError::Camera(e.to_string()))?;
        let name = camera.info().human_name();
        Ok((camera, name))
    }

    fn grab(camera: &mut nokhwa::Camera) -> Result<GrayImage, FrameError> {
        let buffer = camera
            .frame()
            .map_err(|e| FrameError::Camera(e.to_string()))?;
        let img = buffer
            .decode_image::<LumaFormat>()
            .map_err(|e| FrameError::Camera(e.to_string()))?;
        GrayImage::from_raw(img.width(), img.height(), img.into_raw())
            .ok_or_else(|| FrameError::Camera("frame size mismatch".into()))
    }

    impl CameraSource {
        /// Opens camera number `index`, failing with [`FrameError::NoCamera`] when the
        /// system has none.
        pub fn open(index: u32) -> Result<Self, FrameError> {
            let (ready_tx, ready_rx) = mpsc::sync_channel(1);
            let (frame_tx, frames) = mpsc::sync_channel(1);
            std::thread::spawn(move || {
                let mut camera = match open_camera(index) {
                    Ok((camera, name)) => {
                        let _ = ready_tx.send(Ok(name));
                        camera
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                loop {
                    let frame = grab(&mut camera);
                    let failed = frame.is_err();
                    match frame_tx.try_send(frame) {
                        // The scan is busy with an older frame: drop this one.
                        Ok(()) | Err(TrySendError::Full(_)) => {}
                        Err(TrySendError::Disconnected(_)) => break,
                    }
                    if failed {
                        break;
                    }
                }
                let _ = camera.stop_stream();
            });
            let name = ready_rx
                .recv_timeout(Duration::from_millis(CAMERA_TIMEOUT_MS))
                .map_err(|_| FrameError::Camera("the camera did not open in time".into()))??;
            Ok(Self { frames, name })
        }
    }

    impl FrameSource for CameraSource {
        fn describe(&self) -> String {
            format!("camera {}", self.name)
        }
        fn is_live(&self) -> bool {
            true
        }
        fn next_frame(&mut self) -> Result<Option<GrayImage>, FrameError> {
            match self
                .frames
                .recv_timeout(Duration::from_millis(CAMERA_TIMEOUT_MS))
            {
                Ok(frame) => frame.map(Some),
                Err(_) => Err(FrameError::Camera(
                    "the camera stopped delivering frames".into(),
                )),
            }
        }
    }
}

/// Opens the default live camera, or explains why there is none.
pub fn open_camera(index: u32) -> Result<Box<dyn FrameSource>, FrameError> {
    #[cfg(feature = "camera")]
    {
        Ok(Box::new(CameraSource::open(index)?))
    }
    #[cfg(not(feature = "camera"))]
    {
        let _ = index;
        Err(FrameError::CameraNotBuilt)
    }
}
