//! Answers counted by response code and query type, for `/metrics`: a
//! response handler that counts what it sends, whoever built the answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hickory_server::net::NetError;
use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::Record;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;

use super::handler::question_points_into_header;

/// Answers sent, by (response code, query type). Cheap to clone: clones
/// share the counts, so the metrics endpoint keeps a handle while the
/// server counts.
///
/// Keys are `&'static str` from fixed sets (the RFC mnemonics of the
/// response codes, hickory's record type names with `Unknown` for every
/// type it does not know, `-` for no single question): a client choosing
/// query types cannot make the number of series grow past a few hundred.
///
/// Also what the server held back: responses over a client prefix's rate
/// (dropped, truncated) and TCP connections over the cap (refused).
#[derive(Clone, Debug, Default)]
pub struct DnsAnswers(
    Arc<Mutex<BTreeMap<(&'static str, &'static str), u64>>>,
    Arc<[AtomicU64; 3]>,
);

/// What [`DnsAnswers::limited`] names its counts.
pub const LIMITED: [&str; 3] = ["dropped", "truncated", "tcp_refused"];

/// Which of [`LIMITED`] one held-back response or connection is.
#[derive(Debug, Clone, Copy)]
pub(super) enum Limited {
    Dropped = 0,
    Truncated = 1,
    TcpRefused = 2,
}

impl DnsAnswers {
    pub(super) fn count_limited(&self, what: Limited) {
        self.1[what as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// (what, how many) for each of [`LIMITED`], so far.
    pub fn limited(&self) -> [(&'static str, u64); 3] {
        std::array::from_fn(|i| (LIMITED[i], self.1[i].load(Ordering::Relaxed)))
    }

    /// One more answer with `rcode` to a question of `qtype`.
    fn count(&self, rcode: ResponseCode, qtype: &'static str) {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry((rcode_name(rcode), qtype)).or_default() += 1;
    }

    /// Every (rcode, qtype, answers) counted so far, sorted.
    pub fn snapshot(&self) -> Vec<(String, String, u64)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(&(rcode, qtype), &n)| (rcode.to_string(), qtype.to_string(), n))
            .collect()
    }
}

/// The RFC mnemonic of `code` (`NOERROR`, `NXDOMAIN`, ...), as dig prints
/// it. 16 is BADVERS: hickory decodes it as BADSIG (TSIG), which this
/// server never uses.
fn rcode_name(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        ResponseCode::BADVERS | ResponseCode::BADSIG => "BADVERS",
        ResponseCode::BADKEY => "BADKEY",
        ResponseCode::BADTIME => "BADTIME",
        ResponseCode::BADMODE => "BADMODE",
        ResponseCode::BADNAME => "BADNAME",
        ResponseCode::BADALG => "BADALG",
        ResponseCode::BADTRUNC => "BADTRUNC",
        ResponseCode::BADCOOKIE => "BADCOOKIE",
        ResponseCode::Unknown(_) => "UNKNOWN",
    }
}

/// The query type an answer to `request` is counted under: the type of
/// its one question, or `-` when it has none, several, or one this
/// server calls unparsable (a pointer into the header).
pub(super) fn counted_qtype(request: &Request) -> &'static str {
    match request.queries.queries() {
        [query] if !question_points_into_header(request.queries.as_bytes()) => {
            query.query_type().into()
        }
        _ => "-",
    }
}

/// A response handler that counts what `inner` sends: wrapping the
/// handle rather than counting in each branch catches every answer,
/// hickory's catalog's included, with the code actually sent (SERVFAIL
/// when the message could not be encoded).
#[derive(Clone)]
pub(super) struct Counted<R> {
    pub(super) inner: R,
    pub(super) counts: DnsAnswers,
    pub(super) qtype: &'static str,
}

#[async_trait::async_trait]
impl<R: ResponseHandler> ResponseHandler for Counted<R> {
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
        let info = self.inner.send_response(response).await?;
        self.counts.count(info.response_code, self.qtype);
        Ok(info)
    }
}
