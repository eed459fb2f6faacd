//! The "Device" menu (SPEC D5): this set-top box's register entry, software updates and
//! the refund of the box itself, all with the remote. Requests prove they come from this
//! box with its device credential; without one the menu says device services are not
//! set up. Downloads are resumed by the runtime and verified there (size, SHA-256 and the
//! vendor's signature) before the state machine hears "verified" and installs.

use protocol::{
    DeviceInfo, DeviceRefund, ErrorCode, HardwareId, OsVersion, UpdateCheck, UpdatePackage,
};

use super::{App, CatalogFocus, Choice, Effect, Failure, Key, Screen};

/// How a download ended, as the runtime reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownloadOutcome {
    /// Complete, and its size, checksum and signature are right.
    Verified,
    /// Complete, but it is not the package the vendor signed: never installed.
    Rejected(String),
    /// The server could not be reached, even after resuming.
    Unreachable(String),
}

/// Where the Device menu is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DevicePhase {
    /// No device credential (or an id that is not a device id): nothing can be asked.
    NotSetUp,
    Loading,
    /// The register entry: "Check for updates" and, if refundable, "Request refund".
    Info,
    Checking,
    UpToDate(OsVersion),
    Available(UpdatePackage),
    Downloading {
        package: UpdatePackage,
        received: u64,
    },
    /// Verified; telling the server the new version.
    Installing(UpdatePackage),
    Installed(OsVersion),
    /// The update did not happen; the old version is kept.
    UpdateFailed {
        title: String,
        detail: String,
    },
    ConfirmRefund,
    Refunding,
    Refunded(DeviceRefund),
    /// A request was refused or could not be sent: what happened, in words.
    Failed {
        title: String,
        detail: String,
    },
}

/// The Device menu's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceScreen {
    pub phase: DevicePhase,
    /// The register entry, once loaded.
    pub info: Option<DeviceInfo>,
    pub focus: Choice,
}

impl DeviceScreen {
    /// Whether the sale can be refunded (sold here, not refunded yet).
    pub fn refundable(&self) -> bool {
        self.info
            .as_ref()
            .and_then(|i| i.sale.as_ref())
            .is_some_and(|s| s.refunded_at_ms.is_none())
    }
}

impl App {
    /// This box's device id and credential, when device services are set up.
    fn device_auth(&self) -> Option<(HardwareId, protocol::Token)> {
        let id = HardwareId::parse(self.identity.device_id.as_str()).ok()?;
        Some((id, self.device_credential.clone()?))
    }

    pub(super) fn open_device(&mut self, fx: &mut Vec<Effect>) {
        let phase = match self.device_auth() {
            Some((id, credential)) => {
                fx.push(Effect::LoadDevice { id, credential });
                DevicePhase::Loading
            }
            None => DevicePhase::NotSetUp,
        };
        self.screen = Screen::Device(Box::new(DeviceScreen {
            phase,
            info: None,
            focus: Choice::Primary,
        }));
    }

    fn device_screen(&mut self) -> Option<&mut DeviceScreen> {
        match &mut self.screen {
            Screen::Device(d) => Some(d),
            _ => None,
        }
    }

    fn set_phase(&mut self, phase: DevicePhase) {
        if let Some(d) = self.device_screen() {
            d.phase = phase;
            d.focus = Choice::Primary;
        }
    }

    fn leave_device(&mut self) {
        self.screen = Screen::Catalog {
            focus: CatalogFocus::Device,
        };
    }

    pub(super) fn on_device_key(&mut self, d: &DeviceScreen, key: Key, fx: &mut Vec<Effect>) {
        use DevicePhase as P;
        let two_buttons = match &d.phase {
            P::Info => d.refundable(),
            P::Available(_) | P::ConfirmRefund => true,
            _ => false,
        };
        match key {
            Key::Left | Key::Right if two_buttons => {
                if let Some(s) = self.device_screen() {
                    s.focus = s.focus.toggled(key);
                }
            }
            Key::Back => match &d.phase {
                P::NotSetUp | P::Loading | P::Info => self.leave_device(),
                // Back returns to the menu: a download under way is then ignored (its
                // task is aborted when the next one starts) and nothing is installed.
                P::Failed { .. } if d.info.is_none() => self.leave_device(),
                _ => self.set_phase(P::Info),
            },
            Key::Ok => self.on_device_ok(d, fx),
            _ => {}
        }
    }

    fn on_device_ok(&mut self, d: &DeviceScreen, fx: &mut Vec<Effect>) {
        use DevicePhase as P;
        let Some((id, credential)) = self.device_auth() else {
            self.leave_device();
            return;
        };
        match (&d.phase, d.focus) {
            (P::NotSetUp, _) => self.leave_device(),
            (P::Info, Choice::Primary) => {
                fx.push(Effect::CheckUpdate { id, credential });
                self.set_phase(P::Checking);
            }
            (P::Info, Choice::Secondary) if d.refundable() => self.set_phase(P::ConfirmRefund),
            (P::Available(package), Choice::Primary) => {
                fx.push(Effect::DownloadUpdate(package.clone()));
                self.set_phase(P::Downloading {
                    package: package.clone(),
                    received: 0,
                });
            }
            (P::ConfirmRefund, Choice::Primary) => {
                fx.push(Effect::RefundDevice { id, credential });
                self.set_phase(P::Refunding);
            }
            (P::UpdateFailed { .. }, _) | (P::Failed { .. }, _) if d.info.is_none() => {
                fx.push(Effect::LoadDevice { id, credential });
                self.set_phase(P::Loading);
            }
            (P::Available(_) | P::ConfirmRefund, Choice::Secondary)
            | (P::UpToDate(_) | P::Installed(_) | P::Refunded(_), _)
            | (P::UpdateFailed { .. } | P::Failed { .. }, _) => self.set_phase(P::Info),
            // Waiting for the server: OK does nothing.
            _ => {}
        }
    }

    pub(super) fn on_device_loaded(&mut self, result: Result<DeviceInfo, Failure>) {
        let Some(d) = self.device_screen() else {
            return;
        };
        if d.phase != DevicePhase::Loading {
            return;
        }
        match result {
            Ok(info) => {
                d.info = Some(info);
                d.phase = DevicePhase::Info;
            }
            Err(f) => d.phase = failed(&f, "This TV's details couldn't be loaded"),
        }
        d.focus = Choice::Primary;
    }

    pub(super) fn on_update_checked(&mut self, result: Result<UpdateCheck, Failure>) {
        if !matches!(
            self.device_screen().map(|d| &d.phase),
            Some(DevicePhase::Checking)
        ) {
            return;
        }
        self.set_phase(match result {
            Ok(UpdateCheck::UpToDate { version }) => DevicePhase::UpToDate(version),
            Ok(UpdateCheck::Available { package }) => DevicePhase::Available(package),
            Err(f) => failed(&f, "Updates couldn't be checked"),
        });
    }

    pub(super) fn on_download_progress(&mut self, version: &OsVersion, got: u64) {
        if let Some(d) = self.device_screen()
            && let DevicePhase::Downloading { package, received } = &mut d.phase
            && &package.version == version
        {
            *received = got.min(package.size);
        }
    }

    pub(super) fn on_download_finished(
        &mut self,
        version: &OsVersion,
        outcome: DownloadOutcome,
        fx: &mut Vec<Effect>,
    ) {
        let package = match self.device_screen().map(|d| &d.phase) {
            Some(DevicePhase::Downloading { package, .. }) if &package.version == version => {
                package.clone()
            }
            _ => return,
        };
        let current = self.installed_version();
        match outcome {
            DownloadOutcome::Verified => {
                let Some((id, credential)) = self.device_auth() else {
                    return;
                };
                fx.push(Effect::ReportVersion {
                    id,
                    credential,
                    version: package.version.clone(),
                });
                self.set_phase(DevicePhase::Installing(package));
            }
            DownloadOutcome::Rejected(why) => {
                tracing::warn!(version = %version, %why, "update package refused");
                self.set_phase(DevicePhase::UpdateFailed {
                    title: "The update was not installed".into(),
                    detail: format!(
                        "The download didn't pass its safety check, so this TV keeps software {}. \
                         Try again later.",
                        current.map_or_else(|| "as it is".into(), |v| v.to_string())
                    ),
                });
            }
            DownloadOutcome::Unreachable(why) => {
                tracing::warn!(version = %version, %why, "update download failed");
                self.set_phase(DevicePhase::UpdateFailed {
                    title: "The download stopped".into(),
                    detail: "The TV couldn't reach the update server. Check the connection \
                             and try again; nothing was changed."
                        .into(),
                });
            }
        }
    }

    pub(super) fn on_version_reported(&mut self, result: Result<DeviceInfo, Failure>) {
        let Some(d) = self.device_screen() else {
            return;
        };
        let DevicePhase::Installing(package) = &d.phase else {
            return;
        };
        let version = package.version.clone();
        match result {
            Ok(info) => {
                d.phase = DevicePhase::Installed(info.os_version.clone());
                d.info = Some(info);
            }
            Err(f) => {
                tracing::warn!(error = f.message(), "the new version was not recorded");
                d.phase = DevicePhase::UpdateFailed {
                    title: "The update was not installed".into(),
                    detail: format!(
                        "Software {version} couldn't be registered with Couchpay. Try again \
                         in a moment."
                    ),
                };
            }
        }
        d.focus = Choice::Primary;
    }

    pub(super) fn on_refund_done(&mut self, result: Result<DeviceRefund, Failure>) {
        let Some(d) = self.device_screen() else {
            return;
        };
        if d.phase != DevicePhase::Refunding {
            return;
        }
        match result {
            Ok(refund) => {
                if let Some(sale) = d.info.as_mut().and_then(|i| i.sale.as_mut()) {
                    sale.refunded_at_ms = Some(refund.refunded_at_ms);
                }
                d.phase = DevicePhase::Refunded(refund);
            }
            Err(f) => {
                if f.code() == Some(ErrorCode::AlreadyRefunded)
                    && let Some(sale) = d.info.as_mut().and_then(|i| i.sale.as_mut())
                {
                    sale.refunded_at_ms.get_or_insert(0);
                }
                d.phase = failed(&f, "The refund didn't go through");
            }
        }
        d.focus = Choice::Primary;
    }

    /// The OS version this box runs, as far as the TV knows.
    pub fn installed_version(&self) -> Option<OsVersion> {
        match &self.screen {
            Screen::Device(d) => d.info.as_ref().map(|i| i.os_version.clone()),
            _ => None,
        }
    }
}

/// What a refused or failed device request means for the person, in words.
fn failed(f: &Failure, fallback: &str) -> DevicePhase {
    tracing::warn!(error = f.message(), "device request failed");
    let (title, detail) = match f.code() {
        None if matches!(f, Failure::Unreachable(_)) => (
            "Couchpay can't be reached",
            "Check this TV's connection and try again.",
        ),
        Some(ErrorCode::AlreadyRefunded) => (
            "This box has been refunded already",
            "A box is refunded once; the money went back to the account that paid for it.",
        ),
        Some(ErrorCode::ReturnWindowClosed) => (
            "The return period has ended",
            "A box can be refunded for 30 days after it was bought.",
        ),
        Some(ErrorCode::NotRefundable) => (
            "This box wasn't bought through Couchpay",
            "Ask the shop where it was bought about a refund.",
        ),
        Some(ErrorCode::Unauthorized | ErrorCode::UnknownDevice) => (
            "This TV couldn't prove which box it is",
            "Ask the shop or the maker to set up device services on this TV again.",
        ),
        _ => (fallback, "Please try again in a moment."),
    };
    DevicePhase::Failed {
        title: title.into(),
        detail: detail.into(),
    }
}
