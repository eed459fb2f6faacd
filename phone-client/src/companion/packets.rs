//! The companion's side of red packets (SPEC R): ask what a set would take, send it
//! into escrow and share its claim link (QR on screen, PNG, link); open a claim link
//! from a scan, a saved picture or the link itself, check it on its (trusted) server and
//! claim one packet; list the sets sent and received, with who got how much.

use std::path::Path;

use protocol::client::ClientError;
use protocol::{
    AccountId, ClaimPacket, Claimed, CreatePackets, DeviceId, ErrorCode, OfferPackets, PacketLink,
    PacketQuote, PacketQuoteRequest, PacketSet, PacketSplit, Page, ShortCode,
};

use super::{Companion, CompanionError, Credentials, share};

/// A red-packet request's failure: the server's own words for the refusals a person can
/// act on (already claimed, none left, expired, not for you, limits), else as any other
/// request.
fn packets_error(server: &protocol::ServerUrl, e: ClientError) -> CompanionError {
    match (&e, e.code()) {
        (
            ClientError::Api { error, .. },
            Some(
                ErrorCode::UnknownPackets
                | ErrorCode::AlreadyClaimed
                | ErrorCode::SoldOut
                | ErrorCode::PacketsExpired
                | ErrorCode::LimitExceeded
                | ErrorCode::InvalidRequest,
            ),
        ) => CompanionError::Packets {
            message: error.message.clone(),
        },
        _ => CompanionError::from_client(server, e),
    }
}

/// What to send: how many packets, how the money is split, and to whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketsToSend {
    pub count: u32,
    pub split: PacketSplit,
    pub message: String,
    /// Only these accounts may claim (`None`: anyone with the link).
    pub allowed: Option<Vec<AccountId>>,
    /// How long packets can be claimed, in seconds (`None`: the server's day).
    pub valid_for_s: Option<u64>,
}

impl Companion {
    /// What the set would take from the sender's wallet, and a warning when its packets
    /// are unusually large (asked before anything moves).
    pub async fn quote_packets(&self, send: &PacketsToSend) -> Result<PacketQuote, CompanionError> {
        let server = self.first_server()?;
        self.client(&server)?
            .quote_packets(&PacketQuoteRequest {
                count: send.count,
                split: send.split,
            })
            .await
            .map_err(|e| packets_error(&server, e))
    }

    /// Sends the set: its total moves from the sender's wallet to escrow.
    pub async fn send_packets(
        &self,
        credentials: &Credentials,
        send: &PacketsToSend,
    ) -> Result<PacketSet, CompanionError> {
        let server = self.first_server()?;
        let (account, auth) = self.auth_for(&server, credentials)?;
        self.client(&server)?
            .create_packets(&CreatePackets {
                account,
                auth,
                count: send.count,
                split: send.split,
                message: send.message.clone(),
                allowed: send.allowed.clone(),
                valid_for_s: send.valid_for_s,
            })
            .await
            .map_err(|e| packets_error(&server, e))
    }

    /// The set behind `link`, as its server has it. Links to servers this companion does
    /// not trust are refused unasked.
    pub async fn open_packets(&self, link: &PacketLink) -> Result<PacketSet, CompanionError> {
        let set = self
            .client(&link.server)?
            .packets(&link.set)
            .await
            .map_err(|e| packets_error(&link.server, e))?;
        if set.id != link.set {
            return Err(CompanionError::RecordMismatch("red-packet set id"));
        }
        Ok(set)
    }

    /// Claims one packet of the set at `link` for the account of `credentials`. A lost
    /// answer is retried once: the server gives each account at most one packet of a
    /// set, so a retry that finds this account's packet already taken answers with it.
    pub async fn claim_packet(
        &self,
        link: &PacketLink,
        credentials: &Credentials,
    ) -> Result<Claimed, CompanionError> {
        let client = self.client(&link.server)?;
        let (account, auth) = self.auth_for(&link.server, credentials)?;
        let req = ClaimPacket {
            account: account.clone(),
            auth,
        };
        let first = client.claim_packet(&link.set, &req).await;
        let answer = match first {
            Err(e) if e.is_transient() => {
                match client.claim_packet(&link.set, &req).await {
                    Err(again) if again.code() == Some(ErrorCode::AlreadyClaimed) => {
                        // The first attempt went through: answer with its packet.
                        let set = self.open_packets(link).await?;
                        if let Some(mine) = set.claims.iter().find(|c| c.recipient == account) {
                            return Ok(Claimed {
                                amount: mine.amount,
                                set: set.clone(),
                            });
                        }
                        Err(again)
                    }
                    other => other,
                }
            }
            other => other,
        };
        answer.map_err(|e| packets_error(&link.server, e))
    }

    /// Asks the TV `tv` (its device id) to show the sender's set at `link`; the TV asks
    /// the room before it shows anything.
    pub async fn offer_packets(
        &self,
        link: &PacketLink,
        credentials: &Credentials,
        tv: &DeviceId,
    ) -> Result<PacketSet, CompanionError> {
        let (account, auth) = self.auth_for(&link.server, credentials)?;
        self.client(&link.server)?
            .offer_packets(
                &link.set,
                &OfferPackets {
                    account,
                    auth,
                    device_id: tv.clone(),
                },
            )
            .await
            .map_err(|e| packets_error(&link.server, e))
    }

    /// The claim link of the open set whose short code a TV shows, on the first trusted
    /// server.
    pub async fn packets_by_code(&self, code: &ShortCode) -> Result<PacketLink, CompanionError> {
        let server = self.first_server()?;
        let set = self
            .client(&server)?
            .packets_by_code(code)
            .await
            .map_err(|e| packets_error(&server, e))?;
        if set.short_code.as_ref() != Some(code) {
            return Err(CompanionError::RecordMismatch("red-packet code"));
        }
        Ok(set.link)
    }

    /// The newest sets the signed-in account sent, or (with `received`) claimed from.
    pub async fn packet_history(
        &self,
        received: bool,
        limit: Option<u32>,
    ) -> Result<Page<PacketSet>, CompanionError> {
        let server = self.first_server()?;
        let (client, s) = self.session_for(&server)?;
        client
            .packet_sets(&s.account, &s.token, received, limit)
            .await
            .map_err(|e| packets_error(&server, e))
    }
}

/// Saves the set's claim link as a QR code PNG at `path`.
pub fn save_packets_png(link: &PacketLink, path: &Path) -> Result<(), CompanionError> {
    share::save_qr_png(&link.to_string(), path)
}

/// The claim link in a saved picture of its QR code.
pub fn packets_in_picture(path: &Path) -> Result<PacketLink, CompanionError> {
    share::link_in_picture(path, |t| PacketLink::parse(t).ok())
        .ok_or(CompanionError::NoPacketsInPicture)
}
