//! What payload prefixes taught about one connection, accumulated message by message.

use std::time::Instant;

use crate::{
    model::{HttpExchange, Protocol},
    protocol::payload::{resolve_greeting, HttpMessage, PayloadFacts},
};

#[derive(Clone, Debug)]
pub struct ConnectionFacts {
    protocol: Option<Protocol>,
    greeting_220: bool,
    http: Option<HttpExchange>,
    /// The SNI of the connection's TLS ClientHello, once seen.
    tls_server_name: Option<std::sync::Arc<str>>,
    pub updated: Instant,
}

impl ConnectionFacts {
    pub fn new(at: Instant) -> ConnectionFacts {
        ConnectionFacts {
            protocol: None,
            greeting_220: false,
            http: None,
            tls_server_name: None,
            updated: at,
        }
    }

    /// Adds what one message said. The first message that names a protocol decides it; HTTP
    /// requests start a new exchange, responses complete the current one.
    pub fn learn(&mut self, facts: &PayloadFacts, at: Instant) {
        self.updated = at;
        if self.protocol.is_none() {
            self.protocol = facts.protocol;
        }
        self.greeting_220 |= facts.greeting_220;
        if let (None, Some(name)) = (&self.tls_server_name, &facts.tls_server_name) {
            self.tls_server_name = Some(name.as_str().into());
        }
        match &facts.http {
            Some(HttpMessage::Request { method, host }) => {
                self.http = Some(HttpExchange {
                    method: Some(method.clone()),
                    host: host.clone(),
                    status_code: None,
                    seen: Some(at),
                });
            }
            Some(HttpMessage::Response { status_code }) => {
                let exchange = self.http.get_or_insert_with(HttpExchange::default);
                exchange.status_code = Some(*status_code);
                exchange.seen = Some(at);
            }
            None => {}
        }
    }

    /// The protocol the payload showed; `by_port` breaks the tie of a bare `220` greeting.
    pub fn protocol(&self, by_port: Protocol) -> Option<Protocol> {
        if self.protocol.is_some() {
            return self.protocol;
        }
        resolve_greeting(
            &PayloadFacts {
                protocol: None,
                http: None,
                greeting_220: self.greeting_220,
                ..PayloadFacts::default()
            },
            by_port,
        )
    }

    pub fn tls_server_name(&self) -> Option<std::sync::Arc<str>> {
        self.tls_server_name.clone()
    }

    pub fn http(&self) -> Option<&HttpExchange> {
        self.http.as_ref()
    }
}
