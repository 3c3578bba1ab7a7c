//! Answers from pool copies (the connection readers' resolutions outside the core's lock)
//! under access rules, through real sockets and real rustls sessions: once a pool is
//! copied for an identity the rules allow, the copy is never handed to an identity, or an
//! anonymous user, the rules refuse.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use rserpool_wire::{AsapMessage, CauseCode};
use support::certs::{ca, leaf};
use support::tls::{tls_listener, tls_url, TlsPe};
use support::*;

const REFUSED: &str = "handle resolutions refused by the access policy (0xa)";

fn answered_one(m: &AsapMessage) -> bool {
    matches!(m, AsapMessage::HandleResolutionResponse { error: None, pes, .. } if pes.len() == 1)
}

fn assert_refused(m: &AsapMessage) {
    match m {
        AsapMessage::HandleResolutionResponse {
            error: Some(e),
            pes,
            ..
        } if pes.is_empty() => assert!(
            e.causes
                .iter()
                .any(|c| c.code == CauseCode::REJECTED_SECURITY),
            "{e:?}"
        ),
        other => panic!("a refused resolution was answered {other:?}"),
    }
}

#[test]
fn a_copied_pool_is_never_answered_to_an_identity_the_rules_refuse() {
    bounded(Duration::from_secs(180), || {
        let dir = scratch("copies-access");
        let log = dir.join("wire.log");
        let ca1 = ca(&dir, "ca1");
        let (rc, rk) = leaf(&dir, &ca1, "registrar", false);
        let (ac, ak) = leaf(&dir, &ca1, "pe-a", true);
        let (bc, bk) = leaf(&dir, &ca1, "pu-b", true);
        let reg = start_registrar(
            "tcp://127.0.0.1:0",
            &log,
            &[
                &tls_listener(&rc, &rk, &ca1.pem, "optional")[..],
                &[
                    "--acl",
                    "identity=pe-a register=PoolA resolve=PoolA",
                    "--acl",
                    "identity=pu-b resolve=Open",
                    "--acl",
                    "identity=anonymous resolve=Open",
                ],
            ]
            .concat(),
        );
        let url = tls_url(&reg);
        let fast = || {
            metric(
                &http_body(&reg.admin, "/metrics"),
                "rserpool_registrar_fast_resolutions_total",
            )
        };
        let mut a = TlsPe::connect(&url, &ca1.pem, &ac, &ak);
        a.register("PoolA", 1).unwrap();
        // pe-a may resolve PoolA: the core answers the first resolution and copies the
        // pool; pe-a's reader answers the second from the copy.
        assert!(answered_one(&a.resolve("PoolA")));
        assert_eq!(fast(), 0.0);
        assert!(answered_one(&a.resolve("PoolA")));
        assert_eq!(fast(), 1.0, "the second resolution came from the copy");
        // Another identity over TLS and an anonymous user over plain TCP: refused (0xa)
        // every time, by the core, while the copy exists.
        let mut b = TlsPe::connect(&url, &ca1.pem, &bc, &bk);
        let mut anon = Raw::connect(&reg.asap);
        let resolution = AsapMessage::HandleResolution {
            subscribe: false,
            handle: "PoolA".into(),
            items: None,
        };
        for _ in 0..20 {
            assert_refused(&b.resolve("PoolA"));
            anon.send_msg(&resolution);
            assert_refused(&anon.recv().expect("an answer"));
        }
        assert_eq!(fast(), 1.0, "a refused user was answered from the copy");
        assert_eq!(protection(&dump(&reg.admin), REFUSED), 40);
        // The copy was there all along: pe-a's next resolution comes from it.
        assert!(answered_one(&a.resolve("PoolA")));
        assert_eq!(fast(), 2.0);
    });
}
