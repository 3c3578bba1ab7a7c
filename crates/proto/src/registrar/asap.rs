//! The ASAP side of the registrar (RFC 5352): the procedures for the messages PEs and PUs
//! send (registration, deregistration, handle resolution, keep-alive acks, unreachability
//! reports). Shared state and the `Core` impl live in `mod.rs`, the per-PE timers in
//! `liveness.rs`; ENRP in `enrp.rs`.

use super::*;

impl Registrar {
    /// One ASAP message received on `conn`: decode, answer errors and
    /// reports, run the procedure, then grant the PE identifiers it freed.
    pub(super) fn on_asap_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        meta: &RecvMeta,
        bytes: &[u8],
    ) {
        // Errors and reports (action `11` parameters) are answered inside `accept`.
        let Some(msg) = self.out.accept(&mut self.counters, conn, bytes) else {
            return;
        };
        match msg {
            AsapMessage::Registration { handle, pe }
                if !self.cfg.access.may_register(meta, &handle) =>
            {
                self.reject_registration(
                    conn,
                    handle,
                    pe.id,
                    Cause::new(CauseCode::REJECTED_SECURITY),
                    Refusal::Security,
                );
            }
            AsapMessage::Registration { handle, pe }
                if !self
                    .reg_conn_rates
                    .allow(now, conn, self.cfg.max_registration_rate) =>
            {
                let cause = Cause::new(CauseCode::LACK_OF_RESOURCES);
                self.reject_registration(conn, handle, pe.id, cause, Refusal::ConnectionRate);
            }
            AsapMessage::Registration { handle, pe }
                if meta.identity.as_deref().is_some_and(|i| {
                    !self.reg_identity_rates.allow(
                        now,
                        Arc::from(i.primary()),
                        self.cfg.max_registration_rate_per_identity,
                    )
                }) =>
            {
                let cause = Cause::new(CauseCode::LACK_OF_RESOURCES);
                self.reject_registration(conn, handle, pe.id, cause, Refusal::IdentityRate);
            }
            AsapMessage::Registration { handle, pe } => {
                self.on_registration(now, conn, meta, handle, pe)
            }
            AsapMessage::Deregistration { handle, pe_id }
                if !self.cfg.access.may_register(meta, &handle) =>
            {
                self.counters.guards.refused_security += 1;
                let msg = AsapMessage::DeregistrationResponse {
                    handle,
                    pe_id,
                    error: Some(OperationError::code(CauseCode::REJECTED_SECURITY)),
                };
                self.send(Dest::Conn(conn), &msg);
            }
            AsapMessage::Deregistration { handle, pe_id } => {
                self.on_deregistration(conn, handle, pe_id)
            }
            AsapMessage::HandleResolution { handle, .. }
                if !self.cfg.access.may_resolve(meta, &handle) =>
            {
                self.counters.guards.resolutions_refused_security += 1;
                let msg = AsapMessage::HandleResolutionResponse {
                    accepted: false,
                    handle,
                    policy: None,
                    pes: Vec::new(),
                    error: Some(OperationError::code(CauseCode::REJECTED_SECURITY)),
                };
                self.send(Dest::Conn(conn), &msg);
            }
            AsapMessage::HandleResolution {
                handle,
                items,
                subscribe,
            } => {
                let source = crate::conn_limits::Source::of(meta.peer.ip());
                let rate = self.cfg.max_hr_rate;
                if self.fast.hr_rates().allow(now, source, rate) {
                    self.on_handle_resolution(conn, handle, items, subscribe)
                } else {
                    // RSPLIB's answer over the limit: Unknown Pool Handle.
                    self.counters.guards.hr_rate_limited += 1;
                    let msg = AsapMessage::HandleResolutionResponse {
                        accepted: false,
                        handle,
                        policy: None,
                        pes: Vec::new(),
                        error: Some(OperationError::code(CauseCode::UNKNOWN_POOL_HANDLE)),
                    };
                    self.send(Dest::Conn(conn), &msg);
                }
            }
            AsapMessage::EndpointKeepAliveAck { handle, pe_id } => {
                self.on_keepalive_ack(now, conn, handle, pe_id)
            }
            AsapMessage::EndpointUnreachable { handle, pe_id } => {
                let source = crate::conn_limits::Source::of(meta.peer.ip());
                if self.eu_rates.allow(now, source, self.cfg.max_eu_rate) {
                    self.on_unreachable(now, conn, handle, pe_id)
                } else {
                    // Ignored over the limit (RSPLIB).
                    self.counters.guards.eu_rate_limited += 1;
                }
            }
            AsapMessage::Error { error } => {
                self.events
                    .push_back(RegistrarEvent::ErrorReceived { conn, error });
            }
            AsapMessage::ServerAnnounce { .. } => self.counters.dropped += 1,
            AsapMessage::RegistrationResponse { .. }
            | AsapMessage::DeregistrationResponse { .. }
            | AsapMessage::HandleResolutionResponse { .. }
            | AsapMessage::EndpointKeepAlive { .. }
            | AsapMessage::Cookie { .. }
            | AsapMessage::CookieEcho { .. }
            | AsapMessage::BusinessCard { .. } => self.unexpected(conn, bytes),
        }
        self.counters.guards.rate_untracked = self.fast.hr_rates().untracked
            + self.eu_rates.untracked
            + self.reg_conn_rates.untracked
            + self.reg_identity_rates.untracked;
        self.grant_freed(now);
    }

    // ------------------------------------------------------------------------------------
    // messages

    pub(super) fn reject_registration(
        &mut self,
        conn: ConnId,
        handle: PoolHandle,
        pe_id: PeId,
        mut cause: Cause,
        reason: Refusal,
    ) {
        // A handle refused for its length is quoted in part, not echoed twice.
        if cause.code == CauseCode::INVALID_VALUES
            && handle.len() > self.cfg.handlespace.max_handle_len
            && cause.info == codec::pool_handle_tlv(&handle)
        {
            cause.info = self.handle_quote(&handle);
        }
        let g = &mut self.counters.guards;
        match reason {
            Refusal::IdentifierInUse => g.refused_identifier_in_use += 1,
            Refusal::UnusableAddress | Refusal::TransportUse => g.refused_unusable_address += 1,
            Refusal::AddressScope | Refusal::LoopbackFromElsewhere => g.refused_address_scope += 1,
            Refusal::RegistrationLife => g.refused_registration_life += 1,
            Refusal::ConnectionQuota => g.refused_connection_quota += 1,
            Refusal::SourceQuota => g.refused_source_quota += 1,
            Refusal::IdentityQuota => g.refused_identity_quota += 1,
            Refusal::ConnectionRate => g.registration_rate_limited += 1,
            Refusal::IdentityRate => g.registration_rate_limited_identity += 1,
            Refusal::PoolFull | Refusal::HandlespaceFull => g.refused_full += 1,
            Refusal::Security => g.refused_security += 1,
            Refusal::AsapTransportGiven | Refusal::Handlespace => {}
        }
        self.events.push_back(RegistrarEvent::RegistrationRejected {
            conn,
            handle: handle.clone(),
            pe_id,
            cause: cause.code,
            reason,
        });
        let msg = AsapMessage::RegistrationResponse {
            reject: true,
            handle,
            pe_id,
            error: Some(OperationError::single(cause)),
        };
        self.send(Dest::Conn(conn), &msg);
    }

    /// The checks that need no handlespace: ASAP transport, Registration Life, user
    /// transport addresses, port, transport use, address scope.
    pub(super) fn check_registration(
        &self,
        meta: &RecvMeta,
        pe: &PoolElement,
    ) -> Result<(), (Refusal, Cause)> {
        let quote_pe = || Cause::with_info(CauseCode::INVALID_VALUES, codec::pool_element_tlv(pe));
        // Discrepancy #28: the registrar fills the ASAP transport itself.
        if pe.asap_transport.is_some() {
            return Err((Refusal::AsapTransportGiven, quote_pe()));
        }
        let life = self.cfg.lifetime_unit.to_duration(pe.registration_life);
        let too_long = match (self.cfg.max_registration_life, life) {
            (None, _) => false,
            (Some(_), None) => true, // infinite
            (Some(max), Some(l)) => l > max,
        };
        if pe.registration_life == 0 || too_long {
            return Err((Refusal::RegistrationLife, quote_pe()));
        }
        let UserTransport::Ip(t) = &pe.user_transport else {
            return Ok(());
        };
        let quote = |r: Refusal| {
            let info = codec::user_transport_tlv(&pe.user_transport);
            Err((r, Cause::with_info(CauseCode::INVALID_VALUES, info)))
        };
        if t.port == 0 {
            return quote(Refusal::UnusableAddress);
        }
        let has_use = matches!(t.kind, TransportKind::Sctp | TransportKind::Tcp);
        if has_use && t.use_field.0 > TransportUse::DATA_PLUS_CONTROL.0 {
            return quote(Refusal::TransportUse);
        }
        let from_loopback = meta.peer.ip().to_canonical().is_loopback();
        for a in &t.addrs {
            match scope_of(*a) {
                None => return quote(Refusal::UnusableAddress),
                Some(s) if s < self.cfg.min_address_scope => return quote(Refusal::AddressScope),
                Some(AddressScope::Loopback) if !from_loopback => {
                    return quote(Refusal::LoopbackFromElsewhere)
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    pub(super) fn on_registration(
        &mut self,
        now: Instant,
        conn: ConnId,
        meta: &RecvMeta,
        handle: PoolHandle,
        mut pe: PoolElement,
    ) {
        let pe_id = pe.id;
        if let Err((reason, cause)) = self.check_registration(meta, &pe) {
            self.reject_registration(conn, handle, pe_id, cause, reason);
            return;
        }
        let life = self.cfg.lifetime_unit.to_duration(pe.registration_life);
        pe.home_registrar = self.server_id;
        pe.asap_transport = Some(asap_transport_of(meta));
        let (old_conn, owned, old_source, holder_failed) = match self.hs.get(&handle, pe_id) {
            Some(e) => {
                let owned = e.pe.home_registrar == self.server_id;
                let failed = self.keepalive_failed(now, &e.bookkeeping);
                let source = if owned { source_of(&e.pe) } else { None };
                (e.bookkeeping.conn.map(ConnId), owned, source, failed)
            }
            None => (None, false, None, false),
        };
        // No hijacking by identifier reuse: the identifier is held over another live
        // connection by a PE that has not failed a keep-alive; probe the holder first.
        // A registration from the PE's own ASAP transport (address and port: the same PE
        // process, e.g. over the connection a takeover opened to it) is no hijack.
        let same_process = self
            .hs
            .get(&handle, pe_id)
            .and_then(|e| e.pe.asap_transport.as_ref())
            == pe.asap_transport.as_ref();
        let holder = old_conn.filter(|c| *c != conn && self.conns.contains(c) && !same_process);
        if let Some(holder) = holder {
            if owned && !holder_failed && self.cfg.pe_id_move == PeIdMove::WhenGone {
                self.hold_registration(now, conn, holder, meta, handle, pe);
                return;
            }
        }
        // Quotas: a re-registration over the same connection / from the same source does
        // not count again.
        let source = SourceKey::of(meta.peer.ip());
        let per_conn = self.cfg.max_pes_per_connection;
        if per_conn > 0
            && old_conn != Some(conn)
            && self.conn_pes.get(&conn).map_or(0, BTreeSet::len) >= per_conn
        {
            let cause = Cause::new(CauseCode::LACK_OF_RESOURCES);
            self.reject_registration(conn, handle, pe_id, cause, Refusal::ConnectionQuota);
            return;
        }
        let per_source = self.cfg.max_pes_per_source;
        if per_source > 0
            && old_source != Some(source)
            && self.source_pes.get(&source).copied().unwrap_or(0) >= per_source
        {
            let cause = Cause::new(CauseCode::LACK_OF_RESOURCES);
            self.reject_registration(conn, handle, pe_id, cause, Refusal::SourceQuota);
            return;
        }
        let identity: Option<Arc<str>> = meta.identity.as_deref().map(|i| Arc::from(i.primary()));
        let old_identity = self.pe_identity.get(&(handle.clone(), pe_id)).cloned();
        let per_identity = self.cfg.max_pes_per_identity;
        if let Some(id) = identity.as_ref().filter(|_| per_identity > 0) {
            if old_identity.as_ref() != Some(id)
                && self.identity_pes.get(id).copied().unwrap_or(0) >= per_identity
            {
                let cause = Cause::new(CauseCode::LACK_OF_RESOURCES);
                self.reject_registration(conn, handle, pe_id, cause, Refusal::IdentityQuota);
                return;
            }
        }
        let before = self
            .subs
            .watched(&handle)
            .then(|| self.hs.get(&handle, pe_id).map(|e| e.pe.clone()));
        let outcome = match self.hs.register(now, &handle, pe) {
            Ok(o) => o,
            Err(e) => {
                let reason = if e.cause.code != CauseCode::LACK_OF_RESOURCES {
                    Refusal::Handlespace
                } else if self.hs.len() >= self.hs.config().max_pes {
                    Refusal::HandlespaceFull
                } else {
                    Refusal::PoolFull
                };
                self.reject_registration(conn, handle, pe_id, e.cause, reason);
                return;
            }
        };
        if old_source != Some(source) {
            self.uncount_source(old_source);
            *self.source_pes.entry(source).or_insert(0) += 1;
        }
        if old_identity != identity {
            self.uncount_identity(&handle, pe_id);
            if let Some(id) = identity {
                *self.identity_pes.entry(id.clone()).or_insert(0) += 1;
                self.pe_identity.insert((handle.clone(), pe_id), id);
            }
        }
        if let Some(bk) = self.hs.bookkeeping_mut(&handle, pe_id) {
            bk.conn = Some(conn.0);
            bk.last_keepalive_sent = None;
            bk.last_keepalive_ack = None;
            bk.expires_at = life.and_then(|d| now.checked_add(d));
        }
        if old_conn != Some(conn) {
            if let Some(old) = old_conn {
                self.unindex_conn(old, &handle, pe_id);
            }
            let set = self.conn_pes.entry(conn).or_default();
            let first = set.is_empty();
            set.insert((handle.clone(), pe_id));
            if first {
                self.limits.set_owner(conn, true);
            }
        } else {
            // The holder re-registered over its own connection: it is alive.
            self.pe_alive(now, &handle, pe_id);
        }
        let first = matches!(outcome, RegisterOutcome::Added);
        self.arm_keepalive_in(now, &handle, pe_id, first);
        let msg = AsapMessage::RegistrationResponse {
            reject: false,
            handle: handle.clone(),
            pe_id,
            error: None,
        };
        self.send(Dest::Conn(conn), &msg);
        let Some(pe) = self.hs.get(&handle, pe_id).map(|e| e.pe.clone()) else {
            return;
        };
        if let Some(before) = before {
            if before.is_none_or(|b| !same_for_users(&b, &pe)) {
                self.pool_changed(&handle);
            }
        }
        // ENRP: the new owner announces it (ADD_PE) to its peers.
        self.enrp_replicate(rserpool_wire::UpdateAction::ADD_PE, &handle, &pe);
        self.events.push_back(match outcome {
            RegisterOutcome::Added => RegistrarEvent::PeAdded { handle, pe },
            RegisterOutcome::Updated { owner_changed } => RegistrarEvent::PeUpdated {
                handle,
                pe,
                owner_changed,
            },
        });
    }

    /// A keep-alive towards the PE is outstanding past its timeout (the timer that removes
    /// it has not run yet).
    pub(super) fn keepalive_failed(&self, now: Instant, bk: &Bookkeeping) -> bool {
        let timeout = self.cfg.keepalive_timeout.max(MIN_PERIOD);
        Self::keepalive_outstanding(bk)
            && bk
                .last_keepalive_sent
                .is_some_and(|s| now >= later(s, timeout))
    }

    /// May an extra keep-alive (for a report or a claim) go to the PE now? At most one per
    /// keep-alive timeout: the PE answered the last one (else it would be outstanding).
    pub(super) fn probe_allowed(&self, now: Instant, handle: &PoolHandle, id: PeId) -> bool {
        let window = self.cfg.keepalive_timeout.max(MIN_PERIOD);
        self.pe_guard
            .get(handle, id)
            .and_then(|g| g.last_probe)
            .is_none_or(|t| now >= later(t, window))
    }

    /// A registration of an identifier held by `holder` (live, not failed): wait for a
    /// probe of the holder. Its acknowledgement refuses the registration (0xa); its
    /// failure, the holder's connection closing or the PE leaving grants it.
    pub(super) fn hold_registration(
        &mut self,
        now: Instant,
        conn: ConnId,
        holder: ConnId,
        meta: &RecvMeta,
        handle: PoolHandle,
        pe: PoolElement,
    ) {
        let pe_id = pe.id;
        // Kept as received: it goes through every check again when granted.
        let mut pe = pe;
        pe.asap_transport = None;
        let refuse = |me: &mut Self, handle: PoolHandle| {
            let cause = Cause::new(CauseCode::REJECTED_SECURITY);
            me.reject_registration(conn, handle, pe_id, cause, Refusal::IdentifierInUse);
        };
        if let Some(p) = self
            .pe_guard
            .get_mut(&handle, pe_id)
            .and_then(|g| g.pending.as_mut())
        {
            if p.conn == conn {
                // The same claimant again (e.g. its request timed out): one answer, for
                // the latest registration.
                p.pe = pe;
                p.meta = meta.clone();
            } else {
                refuse(self, handle);
            }
            return;
        }
        if self
            .conn_guard
            .get(&conn)
            .is_some_and(|g| g.pending.len() >= PENDING_MOVES_PER_CONN)
        {
            refuse(self, handle);
            return;
        }
        let outstanding = self
            .hs
            .get(&handle, pe_id)
            .is_some_and(|e| Self::keepalive_outstanding(&e.bookkeeping));
        if !outstanding {
            if !self.probe_allowed(now, &handle, pe_id) {
                // It answered a probe less than a keep-alive timeout ago.
                self.counters.guards.probes_limited += 1;
                refuse(self, handle);
                return;
            }
            self.pe_guard.entry(&handle, pe_id).last_probe = Some(now);
            self.send_keepalive(now, &handle, pe_id);
        }
        self.counters.guards.moves_held += 1;
        self.pe_guard.entry(&handle, pe_id).pending = Some(PendingMove {
            conn,
            meta: meta.clone(),
            handle: handle.clone(),
            pe,
        });
        self.conn_guard
            .entry(conn)
            .or_default()
            .pending
            .push((handle.clone(), pe_id));
        self.events.push_back(RegistrarEvent::RegistrationHeld {
            conn,
            handle,
            pe_id,
            holder,
        });
    }

    /// The PE proved alive on its registration connection (ACK or re-registration):
    /// reports are answered, a registration waiting for its identifier is refused.
    pub(super) fn pe_alive(&mut self, now: Instant, handle: &PoolHandle, id: PeId) {
        let Some(g) = self.pe_guard.get_mut(handle, id) else {
            return;
        };
        g.probing = false;
        if self.cfg.probe_on_unreachable {
            g.reporters.clear();
        }
        let pending = g.pending.take();
        if let Some(p) = pending {
            self.forget_pending(p.conn, handle, id);
            if self.conns.contains(&p.conn) {
                let cause = Cause::new(CauseCode::REJECTED_SECURITY);
                self.reject_registration(p.conn, p.handle, id, cause, Refusal::IdentifierInUse);
            }
        }
        let window = self.cfg.keepalive_timeout.max(MIN_PERIOD);
        self.pe_guard.prune(handle, id, now, window);
    }

    pub(super) fn forget_pending(&mut self, conn: ConnId, handle: &PoolHandle, id: PeId) {
        if let Some(g) = self.conn_guard.get_mut(&conn) {
            g.pending.retain(|(h, i)| !(h == handle && *i == id));
            if g.is_idle() {
                self.conn_guard.remove(&conn);
            }
        }
    }

    /// Answer the registrations whose identifier became free during this input.
    pub(super) fn grant_freed(&mut self, now: Instant) {
        while let Some(p) = self.freed.pop() {
            self.forget_pending(p.conn, &p.handle, p.pe.id);
            if !self.conns.contains(&p.conn) {
                continue;
            }
            self.counters.guards.moves_granted += 1;
            self.on_registration(now, p.conn, &p.meta, p.handle, p.pe);
        }
    }

    /// The PE no longer counts towards the identity that registered it.
    pub(super) fn uncount_identity(&mut self, handle: &PoolHandle, pe_id: PeId) {
        let Some(id) = self.pe_identity.remove(&(handle.clone(), pe_id)) else {
            return;
        };
        if let Some(n) = self.identity_pes.get_mut(&id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.identity_pes.remove(&id);
            }
        }
    }

    pub(super) fn uncount_source(&mut self, source: Option<SourceKey>) {
        let Some(s) = source else { return };
        if let Some(n) = self.source_pes.get_mut(&s) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.source_pes.remove(&s);
            }
        }
    }

    pub(super) fn on_deregistration(&mut self, conn: ConnId, handle: PoolHandle, pe_id: PeId) {
        let mut error = None;
        if let Some(e) = self.hs.get(&handle, pe_id) {
            let other = e
                .bookkeeping
                .conn
                .map(ConnId)
                .filter(|c| *c != conn && self.conns.contains(c));
            if e.pe.home_registrar == self.server_id && other.is_some() {
                // Registered over another live connection: no de-registration by proxy.
                error = Some(OperationError::code(CauseCode::REJECTED_SECURITY));
            } else {
                self.remove_pe(&handle, pe_id, RemovalReason::Deregistered);
            }
        }
        let msg = AsapMessage::DeregistrationResponse {
            handle,
            pe_id,
            error,
        };
        self.send(Dest::Conn(conn), &msg);
    }

    pub(super) fn on_handle_resolution(
        &mut self,
        conn: ConnId,
        handle: PoolHandle,
        items: Option<u32>,
        subscribe: bool,
    ) {
        let mut accepted = false;
        if !subscribe {
            if self.subs.unsubscribe(conn, &handle) {
                self.counters.guards.subscriptions_ended += 1;
            }
        } else if self.hs.pool_len(&handle) > 0 {
            match self.subs.subscribe(
                conn,
                &handle,
                items,
                self.cfg.max_subscriptions_per_connection,
                self.cfg.max_subscriptions,
            ) {
                Ok(new) => {
                    accepted = true;
                    self.counters.guards.subscriptions_accepted += u64::from(new);
                }
                Err(_) => self.counters.guards.subscriptions_refused += 1,
            }
        }
        let sent = self.answer_resolution(conn, &handle, items, accepted);
        // Every PE too long for a message: no subscription after all (the negative
        // answer says A = 0).
        if accepted && !sent && self.subs.unsubscribe(conn, &handle) {
            self.counters.guards.subscriptions_ended += 1;
        }
    }

    /// A pool changed (PE added, removed, re-registered differently): its subscribers get
    /// a push at the end of this input or of the interval ([`super::subs`]).
    pub(super) fn pool_changed(&mut self, handle: &PoolHandle) {
        if self.subs.changed(handle) {
            self.counters.guards.subscription_pushes_coalesced += 1;
        }
    }

    /// Send the pushes that are due: a fresh response (A = 1) to each subscriber, or a
    /// last negative one (A = 0) when the pool is gone.
    pub(super) fn push_updates(&mut self, now: Instant) {
        let ready = self
            .subs
            .take_ready(now, self.cfg.subscription_interval.max(MIN_PERIOD));
        for (handle, subscribers) in ready {
            if self.hs.pool_len(&handle) == 0 {
                let ended = self.subs.drop_pool(&handle);
                self.counters.guards.subscriptions_ended += ended.len() as u64;
                for conn in ended {
                    if !self.conns.contains(&conn) {
                        continue;
                    }
                    let msg = AsapMessage::HandleResolutionResponse {
                        accepted: false,
                        handle: handle.clone(),
                        policy: None,
                        pes: Vec::new(),
                        error: Some(OperationError::code(CauseCode::UNKNOWN_POOL_HANDLE)),
                    };
                    self.counters.guards.subscription_pushes += 1;
                    self.send(Dest::Conn(conn), &msg);
                }
                continue;
            }
            for (conn, items) in subscribers {
                if !self.conns.contains(&conn) {
                    continue;
                }
                self.counters.guards.subscription_pushes += 1;
                self.answer_resolution(conn, &handle, items, true);
            }
        }
    }

    /// Answer a handle resolution of `handle` from `conn` (or push to a subscriber): up
    /// to `items` PEs chosen by the pool's policy, as many as fit in one message, encoded
    /// straight from the handlespace without a copy of each; or the cause there are none.
    /// True when PEs were sent.
    fn answer_resolution(
        &mut self,
        conn: ConnId,
        handle: &PoolHandle,
        items: Option<u32>,
        accepted: bool,
    ) -> bool {
        let n = super::fast::hr_items(self.cfg.default_hr_items, self.cfg.max_hr_items, items);
        if let Some((copy, picks)) = self.choose_from_copy(handle, n) {
            let bytes = copy.encode(accepted, handle, &picks);
            if !bytes.is_empty() {
                self.conn_guard
                    .entry(conn)
                    .or_default()
                    .note_resolved(handle);
                self.out
                    .send_encoded(&mut self.counters, Dest::Conn(conn), Protocol::Asap, bytes);
                return true;
            }
        }
        let ids = self.hs.select(handle, n).unwrap_or_default();
        let include = self.cfg.hr_include_asap_transport;
        // Keep the response within the 16-bit Message Length: header, handle, the overall
        // policy TLV (at most as long as the longest per-PE one) and whole PEs only.
        let mut room = codec::MAX_MESSAGE_LEN.saturating_sub(4 + codec::pad4(4 + handle.len()));
        let mut pes: Vec<&PoolElement> = Vec::with_capacity(ids.len());
        for id in &ids {
            let Some(e) = self.hs.get(handle, *id) else {
                continue;
            };
            let pe = &e.pe;
            let asap = match (&pe.asap_transport, include) {
                (Some(t), false) => codec::transport_len(t),
                _ => 0,
            };
            let need = codec::pool_element_len(pe) - asap
                + if pes.is_empty() {
                    codec::policy_len(&pe.policy)
                } else {
                    0
                };
            if need > room {
                break;
            }
            room -= need;
            pes.push(pe);
        }
        let dest = Dest::Conn(conn);
        let Some(first) = pes.first() else {
            let msg = AsapMessage::HandleResolutionResponse {
                accepted: false,
                handle: handle.clone(),
                policy: None,
                pes: Vec::new(),
                // A pool whose first PE alone does not fit in a message: Lack of Resources.
                error: Some(OperationError::code(if ids.is_empty() {
                    CauseCode::UNKNOWN_POOL_HANDLE
                } else {
                    CauseCode::LACK_OF_RESOURCES
                })),
            };
            self.send(dest, &msg);
            return false;
        };
        // Its reports about this pool may count from now on.
        self.conn_guard
            .entry(conn)
            .or_default()
            .note_resolved(handle);
        let out = ResolutionOut {
            accepted,
            handle,
            // Always present (Discrepancy #4), from the first selected PE (RSPLIB).
            policy: &first.policy,
            pes: &pes,
            asap_transport: include,
        };
        // The choice kept the message within its length field, so this cannot fail.
        if self.out.try_send(&mut self.counters, dest, &out).is_err() {
            self.counters.unencodable += 1;
        }
        // Later resolutions of this pool may be answered from a copy.
        self.share(handle);
        true
    }

    pub(super) fn on_keepalive_ack(
        &mut self,
        now: Instant,
        conn: ConnId,
        handle: PoolHandle,
        pe_id: PeId,
    ) {
        // Only an ACK on the PE's own registration connection counts, or (after a takeover)
        // one on the connection this registrar opened to the PE's ASAP transport.
        let Some(e) = self.hs.get(&handle, pe_id) else {
            self.counters.dropped += 1;
            return;
        };
        let owned = e.pe.home_registrar == self.server_id;
        // (The PE may have registered over another connection meanwhile: it is the same
        // PE process, and the connection it acknowledged on is the one it made home.)
        let adopted = owned
            && e.bookkeeping.conn != Some(conn.0)
            && self
                .opened
                .get(&conn)
                .is_some_and(|ep| Some(ep) == self.pe_endpoint(&e.pe).as_ref());
        let registered_here = owned && e.bookkeeping.conn == Some(conn.0);
        if !registered_here && !adopted {
            self.counters.dropped += 1;
            return;
        }
        if adopted {
            self.adopt_conn(conn, &handle, pe_id);
        }
        if let Some(bk) = self.hs.bookkeeping_mut(&handle, pe_id) {
            bk.last_keepalive_ack = Some(now);
        }
        self.pe_alive(now, &handle, pe_id);
        self.arm_keepalive(now, &handle, pe_id);
    }

    pub(super) fn report(
        &mut self,
        conn: ConnId,
        handle: PoolHandle,
        pe_id: PeId,
        outcome: ReportOutcome,
    ) {
        self.events.push_back(RegistrarEvent::UnreachableReport {
            conn,
            handle,
            pe_id,
            outcome,
        });
    }

    /// ASAP_ENDPOINT_UNREACHABLE. Only a connection that resolved the pool is heard; its
    /// report counts once until the PE answers a keep-alive. With probing, a heard report
    /// probes the PE (none while a keep-alive is outstanding, at most one extra probe per
    /// keep-alive timeout) and only a failed probe removes it; without, the PE goes when
    /// `max_bad_pe_reports` connections' reports counted.
    pub(super) fn on_unreachable(
        &mut self,
        now: Instant,
        conn: ConnId,
        handle: PoolHandle,
        pe_id: PeId,
    ) {
        let Some(e) = self.hs.get(&handle, pe_id) else {
            self.counters.dropped += 1;
            self.report(conn, handle, pe_id, ReportOutcome::UnknownPe);
            return;
        };
        let owned = e.pe.home_registrar == self.server_id;
        let outstanding = Self::keepalive_outstanding(&e.bookkeeping);
        if !self
            .conn_guard
            .get(&conn)
            .is_some_and(|g| g.has_resolved(&handle))
        {
            self.counters.guards.reports_not_resolved += 1;
            self.report(conn, handle, pe_id, ReportOutcome::NotResolved);
            return;
        }
        let max_bad = usize::try_from(self.cfg.max_bad_pe_reports.max(1)).unwrap_or(usize::MAX);
        // Counted once per connection until the PE next answers a keep-alive.
        let g = self.pe_guard.entry(&handle, pe_id);
        let fresh =
            !g.reporters.contains(&conn) && g.reporters.len() < REPORTERS_PER_PE.max(max_bad);
        if fresh {
            g.reporters.push(conn);
        }
        let counted = g.reporters.len();
        if fresh {
            self.counters.guards.reports_counted += 1;
            if let Some(bk) = self.hs.bookkeeping_mut(&handle, pe_id) {
                bk.unreachable_reports = bk.unreachable_reports.saturating_add(1);
            }
        } else {
            self.counters.guards.reports_repeated += 1;
        }
        if !self.cfg.probe_on_unreachable {
            if !fresh {
                self.report(conn, handle, pe_id, ReportOutcome::Repeated);
            } else if counted >= max_bad {
                self.remove_pe(&handle, pe_id, RemovalReason::Unreachable);
            } else {
                self.report(conn, handle, pe_id, ReportOutcome::Counted);
            }
            return;
        }
        // Probing: any report of a resolving connection may probe; the probe rate per PE
        // is what bounds a flood.
        if !owned {
            self.report(conn, handle, pe_id, ReportOutcome::NotOwned);
            return;
        }
        self.pe_guard.entry(&handle, pe_id).probing = true;
        if outstanding {
            self.report(conn, handle, pe_id, ReportOutcome::AwaitingKeepAlive);
            return;
        }
        if !self.probe_allowed(now, &handle, pe_id) {
            self.counters.guards.probes_limited += 1;
            self.pe_guard.entry(&handle, pe_id).probing = false;
            self.report(conn, handle, pe_id, ReportOutcome::ProbeLimited);
            return;
        }
        self.pe_guard.entry(&handle, pe_id).last_probe = Some(now);
        self.counters.guards.report_probes += 1;
        self.report(conn, handle.clone(), pe_id, ReportOutcome::Probing);
        // RFC: a probe that cannot be sent means unreachable.
        if !self.send_keepalive(now, &handle, pe_id) {
            self.remove_pe(&handle, pe_id, RemovalReason::Unreachable);
        }
    }

    pub(super) fn unexpected(&mut self, conn: ConnId, bytes: &[u8]) {
        self.counters.dropped += 1;
        let n = bytes.len().min(rserpool_wire::MAX_REPORTED_INFO);
        let cause = Cause::with_info(CauseCode::UNRECOGNIZED_MESSAGE, bytes[..n].to_vec());
        self.out
            .send_error(&mut self.counters, Dest::Conn(conn), vec![cause]);
    }
}

/// Whether a PU would see no difference between two versions of a PE (a re-registration
/// that only refreshed it): same transports and policy; the Registration Life and home
/// do not matter to it.
pub(super) fn same_for_users(a: &PoolElement, b: &PoolElement) -> bool {
    a.user_transport == b.user_transport
        && a.policy == b.policy
        && a.asap_transport == b.asap_transport
}

/// A positive handle resolution response over borrowed PEs.
struct ResolutionOut<'a> {
    accepted: bool,
    handle: &'a PoolHandle,
    policy: &'a rserpool_wire::Policy,
    pes: &'a [&'a PoolElement],
    asap_transport: bool,
}

impl crate::common::OutMessage for ResolutionOut<'_> {
    const PROTOCOL: Protocol = Protocol::Asap;
    fn type_code(&self) -> u8 {
        rserpool_wire::asap_type::HANDLE_RESOLUTION_RESPONSE
    }
    fn try_encode(&self) -> Result<Vec<u8>, rserpool_wire::EncodeError> {
        let mut v = Vec::with_capacity(64 + 48 * self.pes.len());
        codec::try_encode_resolution_response(
            self.accepted,
            self.handle,
            self.policy,
            self.pes,
            self.asap_transport,
            &mut v,
        )?;
        Ok(v)
    }
}
