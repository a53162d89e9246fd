//! Application-level names from a flow's first payloads: the DNS query, its
//! record type and the response code, the TLS server name, the HTTP host and method. They are
//! text for analysts, not features, and they come from the capture: whoever
//! shows them must treat them as untrusted.

use crate::record::AppNames;

/// Longest name kept, in characters.
const MAX_NAME: usize = 255;

fn clip(s: &str) -> String {
    s.chars().take(MAX_NAME).collect()
}

/// Looks at one payload of a flow and fills the names not known yet.
pub fn inspect(app: &mut AppNames, protocol: u8, sport: u16, dport: u16, payload: &[u8]) {
    let dns_port = |p: u16| p == 53 || p == 5353 || p == 5355;
    if dns_port(sport) || dns_port(dport) {
        let message = match protocol {
            17 => Some(payload),
            6 if payload.len() > 2 => Some(&payload[2..]),
            _ => None,
        };
        if let Some(message) = message {
            dns(app, message);
        }
        return;
    }
    if protocol != 6 {
        return;
    }
    if payload.first() == Some(&0x16) {
        if app.tls_sni.is_none() {
            app.tls_sni = tls_server_name(payload);
        }
    } else if app.http_method.is_none() {
        http(app, payload);
    }
}

fn dns(app: &mut AppNames, message: &[u8]) {
    let Ok(packet) = simple_dns::Packet::parse(message) else {
        return;
    };
    if app.dns_query.is_none()
        && let Some(question) = packet.questions.first()
    {
        app.dns_query = Some(clip(&question.qname.to_string()));
        app.dns_qtype = Some(qtype_name(question.qtype));
    }
    if packet.has_flags(simple_dns::PacketFlag::RESPONSE) && app.dns_rcode.is_none() {
        app.dns_rcode = Some(format!("{:?}", packet.rcode()).to_ascii_uppercase());
    }
}

/// A question's record type as zone files write it: `A`, `TXT`, `NULL`,
/// `ANY`; a type without a name as `TYPE65` (RFC 3597).
fn qtype_name(qtype: simple_dns::QTYPE) -> String {
    use simple_dns::{QTYPE, TYPE};
    match qtype {
        QTYPE::TYPE(TYPE::Unknown(code)) => format!("TYPE{code}"),
        QTYPE::TYPE(known) => format!("{known:?}"),
        other => format!("{other:?}"),
    }
}

fn tls_server_name(payload: &[u8]) -> Option<String> {
    use tls_parser::{TlsExtension, TlsMessage, TlsMessageHandshake};
    let (_, record) = tls_parser::parse_tls_plaintext(payload).ok()?;
    for message in record.msg {
        if let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) = message {
            let (_, extensions) = tls_parser::parse_tls_client_hello_extensions(hello.ext?).ok()?;
            for extension in extensions {
                if let TlsExtension::SNI(names) = extension {
                    let (_, name) = names.first()?;
                    return Some(clip(&String::from_utf8_lossy(name)));
                }
            }
        }
    }
    None
}

fn http(app: &mut AppNames, payload: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    // A partial request (headers cut by the packet boundary) still names its method.
    if request.parse(payload).is_err() {
        return;
    }
    if let Some(method) = request.method {
        app.http_method = Some(clip(method));
    }
    if let Some(host) = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
    {
        app.http_host = Some(clip(&String::from_utf8_lossy(host.value)));
    }
}
