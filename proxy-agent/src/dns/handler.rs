//! The request handler, [`Authority`]: what it refuses and the negative
//! answers first, the rest from hickory's catalog, every answer counted;
//! and the same answer to a raw message without a socket (tests, fuzzer).

use std::iter;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use hickory_server::net::NetError;
use hickory_server::net::runtime::{Time, TokioTime};
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, LowerQuery, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::{DNSClass, Record, RecordType};
use hickory_server::proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use tracing::warn;

use super::answers::Answers;
use super::counts::{Counted, DnsAnswers, Limited, counted_qtype};
use super::rrl::{Action, ResponseLimit};
use super::zone::{ZoneSet, zone_records};
use crate::config::Config;

/// The answers: the current catalog and what exists in each zone,
/// replaced together by [`replace`](Self::replace). Cheap to clone (clones
/// share them). It is the server's request handler.
#[derive(Clone)]
pub struct Authority {
    current: Arc<RwLock<Arc<Answers>>>,
    /// Outlives [`replace`](Self::replace): counters are cumulative
    /// across reloads, as Prometheus expects of a counter.
    counts: DnsAnswers,
    /// Response-rate limiting of UDP answers (none: every one is sent).
    limit: Option<Arc<ResponseLimit>>,
}

impl Authority {
    pub fn new(zones: &ZoneSet) -> anyhow::Result<Self> {
        Ok(Authority {
            current: Arc::new(RwLock::new(Arc::new(Answers::new(zones)?))),
            counts: DnsAnswers::default(),
            limit: None,
        })
    }

    /// Limits UDP responses to `per_second` per client prefix (see
    /// [`super::rrl`]); 0: no limit.
    pub fn with_rate_limit(mut self, per_second: u32) -> Self {
        self.limit = (per_second > 0).then(|| Arc::new(ResponseLimit::new(per_second)));
        self
    }

    /// The answers counted so far, and from now on (a shared handle).
    pub fn answers(&self) -> DnsAnswers {
        self.counts.clone()
    }

    /// The authority for `config`'s `dns_server` (empty when it has none).
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        Self::new(&zone_records(config)?)
    }

    /// Answers from `zones` from now on; queries being answered finish
    /// with the old ones. On error the old answers stay.
    pub fn replace(&self, zones: &ZoneSet) -> anyhow::Result<()> {
        let new = Arc::new(Answers::new(zones)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = new;
        Ok(())
    }

    fn current(&self) -> Arc<Answers> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The reply to `query` (a DNS message as received over UDP from
    /// `src`), exactly as the server would send it, or `None` when the
    /// server would send nothing: fewer than 12 bytes (no header), or a
    /// response (QR=1). Input it cannot parse past the header gets FORMERR,
    /// as in hickory's server loop, which this mirrors.
    pub async fn answer(&self, query: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        self.answer_over(query, src, Protocol::Udp).await
    }

    /// [`Self::answer`] for a query that came over `protocol` (TCP: no
    /// size limit but the message's 64 KiB, and no rate limit).
    pub(super) async fn answer_over(
        &self,
        query: &[u8],
        src: SocketAddr,
        protocol: Protocol,
    ) -> Option<Vec<u8>> {
        let header = Header::read(&mut BinDecoder::new(query)).ok()?;
        let capture = Capture {
            tcp: protocol == Protocol::Tcp,
            ..Capture::default()
        };
        match Request::from_bytes(query.to_vec(), src, protocol) {
            Ok(request) => {
                if request.metadata.message_type == MessageType::Response {
                    return None;
                }
                self.handle_request::<_, TokioTime>(&request, capture.clone())
                    .await;
            }
            Err(_) => {
                let queries = Queries::read(&mut BinDecoder::new(&[]), 0).ok()?;
                let response = MessageResponseBuilder::new(&queries, None)
                    .error_msg(&header.metadata, ResponseCode::FormErr);
                let mut counted = Counted {
                    inner: capture.clone(),
                    counts: self.counts.clone(),
                    qtype: "-",
                };
                counted.send_response(response).await.ok()?;
            }
        }
        capture.take()
    }
}

#[async_trait::async_trait]
impl RequestHandler for Authority {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let counted = Counted {
            inner: response_handle,
            counts: self.counts.clone(),
            qtype: counted_qtype(request),
        };
        if request.protocol() == Protocol::Udp
            && let Some(limit) = &self.limit
        {
            match limit.check(request.src().ip()) {
                Action::Send => {}
                Action::Drop => {
                    self.counts.count_limited(Limited::Dropped);
                    return serve_failed(request);
                }
                Action::Truncate => {
                    self.counts.count_limited(Limited::Truncated);
                    // The header and question only, TC=1: a real client
                    // asks again over TCP.
                    let mut metadata = Metadata::response_from_request(&request.metadata);
                    metadata.truncation = true;
                    if question_points_into_header(request.queries.as_bytes()) {
                        return match Queries::read(&mut BinDecoder::new(&[]), 0) {
                            Ok(none) => send(request, &none, metadata, &[], counted).await,
                            Err(_) => serve_failed(request),
                        };
                    }
                    return send(request, &request.queries, metadata, &[], counted).await;
                }
            }
        }
        self.respond::<_, T>(request, counted).await
    }
}

impl Authority {
    /// The answer to `request`, sent through `response_handle`.
    async fn respond<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        if question_points_into_header(request.queries.as_bytes()) {
            // hickory echoes the question as received: its pointer would
            // point into the reply's header. FORMERR, with no question.
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::FormErr;
            return match Queries::read(&mut BinDecoder::new(&[]), 0) {
                Ok(none) => send(request, &none, metadata, &[], response_handle).await,
                Err(_) => serve_failed(request),
            };
        }
        if let Some(code) = refusal(request) {
            return send_error(request, code, response_handle).await;
        }
        let answers = self.current();
        if let Some(query) = standard_query(request)
            && let Some((code, soa)) = answers.negative(query.name(), query.query_type())
        {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.authoritative = true;
            metadata.response_code = code;
            return send(request, &request.queries, metadata, &[soa], response_handle).await;
        }
        answers
            .catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

/// Whether a name in `question` (a question section as received) has a
/// compression pointer into the 12-byte header. hickory's decoder takes a
/// pointer to anywhere before the name, which for the first question is
/// only the header: nonsense, and hickory's reply, which copies the
/// question's bytes as received, would point at its own header and not
/// parse.
pub(super) fn question_points_into_header(question: &[u8]) -> bool {
    const HEADER_LEN: usize = 12;
    let mut at = 0;
    while at < question.len() {
        loop {
            let Some(&len) = question.get(at) else {
                return false;
            };
            if len & 0xc0 == 0xc0 {
                let low = question.get(at + 1).copied().unwrap_or(0);
                if (usize::from(len & 0x3f) << 8 | usize::from(low)) < HEADER_LEN {
                    return true;
                }
                at += 2; // a pointer ends the name
                break;
            }
            at += 1 + usize::from(len);
            if len == 0 {
                break;
            }
        }
        at += 4; // type and class
    }
    false
}

/// The one question of `request` when it is a QUERY with one question and
/// no EDNS version it refuses (BADVERS).
fn single_query(request: &Request) -> Option<&LowerQuery> {
    let edns_ok = request.edns.as_ref().is_none_or(|e| e.version() == 0);
    let [query] = request.queries.queries() else {
        return None;
    };
    let plain = request.metadata.message_type == MessageType::Query
        && request.metadata.op_code == OpCode::Query
        && edns_ok;
    plain.then_some(query)
}

/// The question of `request` when it is one the catalog would look up:
/// a [`single_query`] of class IN.
fn standard_query(request: &Request) -> Option<&LowerQuery> {
    single_query(request).filter(|query| query.query_class() == DNSClass::IN)
}

/// What this server refuses before the catalog sees the query: zone
/// transfers (the catalog would answer IXFR with the SOA) and classes
/// other than IN (the in-memory store ignores the class).
fn refusal(request: &Request) -> Option<ResponseCode> {
    let query = single_query(request)?;
    let refused = matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR)
        || query.query_class() != DNSClass::IN;
    refused.then_some(ResponseCode::Refused)
}

async fn send_error<R: ResponseHandler>(
    request: &Request,
    code: ResponseCode,
    response_handle: R,
) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = code;
    send(request, &request.queries, metadata, &[], response_handle).await
}

/// Sends a response to `request` with `queries`, no answers, `authorities`,
/// and EDNS (version 0) when the request has it, as hickory's catalog does.
async fn send<R: ResponseHandler>(
    request: &Request,
    queries: &Queries,
    metadata: Metadata,
    authorities: &[&Record],
    mut response_handle: R,
) -> ResponseInfo {
    let edns = request.edns.as_ref().map(|req| {
        let mut edns = Edns::new();
        edns.set_max_payload(req.max_payload().max(512));
        edns.set_version(0);
        edns
    });
    let response = MessageResponseBuilder::new(queries, edns.as_ref()).build(
        metadata,
        iter::empty(),
        authorities.iter().copied(),
        iter::empty(),
        iter::empty(),
    );
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            warn!(%error, "DNS server: cannot send a response");
            serve_failed(request)
        }
    }
}

/// What the server logs for a request it could not answer.
fn serve_failed(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

/// A response handler that keeps the encoded reply (as UDP, or TCP when
/// `tcp`, would send it).
#[derive(Clone, Default)]
struct Capture {
    reply: Arc<Mutex<Option<Vec<u8>>>>,
    tcp: bool,
}

impl Capture {
    fn take(&self) -> Option<Vec<u8>> {
        self.reply
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        // As hickory's `MessageResponse::encode` for UDP: the EDNS payload
        // size or 512 bytes, and SERVFAIL when the message cannot be built.
        let id = response.metadata().id;
        let max_size = if self.tcp {
            u16::MAX
        } else {
            response.edns().map_or(512, Edns::max_payload)
        };
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max_size);
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(_) => {
                bytes.clear();
                let mut encoder = BinEncoder::new(&mut bytes);
                let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                let header = Header {
                    metadata,
                    counts: HeaderCounts::default(),
                };
                hickory_server::proto::serialize::binary::BinEncodable::emit(
                    &header,
                    &mut encoder,
                )?;
                ResponseInfo::from(header)
            }
        };
        *self.reply.lock().unwrap_or_else(PoisonError::into_inner) = Some(bytes);
        Ok(info)
    }
}
