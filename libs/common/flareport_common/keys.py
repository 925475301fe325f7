"""Every Redis key and stream name Flareport uses, in one place, under one configurable prefix.

Keys that one operation touches together share a hash tag (``{agent:<id>}``, ``{target:<key>}``) so the
layout already works on Redis Cluster. Nothing outside this module builds a key by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "fp:"

# Consumer group names, one per consuming service.
GROUP_RECONCILER = "reconciler"
GROUP_DNS_WORKER = "dns-worker"
GROUP_AGENT = "agent"


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = DEFAULT_PREFIX

    # Streams (README.md, "Architecture"; docs/stream-runtime.md).
    @property
    def events(self) -> str:
        return f"{self.prefix}stream:events"

    @property
    def intents(self) -> str:
        return f"{self.prefix}stream:intents"

    @property
    def cf_jobs(self) -> str:
        return f"{self.prefix}stream:cf-jobs"

    @property
    def cf_jobs_zones(self) -> str:
        """The DNS zones' jobs, apart from the other targets' (``cf_jobs_for``)."""
        return f"{self.prefix}stream:cf-jobs-zones"

    def cf_jobs_for(self, target: str) -> str:
        """The jobs stream of a target (``kind:name``). A zone's jobs have a lane of their own: one zone job carries
        the DNS changes of many hostnames and a zone has one job in flight at a time, so behind a backlog of tunnel
        and Access jobs (one each per tunnel or app, thousands when a fleet starts) every hostname of the zone would
        wait for that backlog, once per job of the zone (docs/dns-worker.md, "Lanes")."""
        return self.cf_jobs_zones if target.startswith("zone:") else self.cf_jobs

    @property
    def cf_results(self) -> str:
        return f"{self.prefix}stream:cf-results"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}stream:dead-letters"

    def agent_commands(self, agent_id: str) -> str:
        return f"{self.prefix}{{agent:{agent_id}}}:commands"

    # Agents and their keys (read model written by the reconciler, key material by the API).
    def agent(self, agent_id: str) -> str:
        return f"{self.prefix}{{agent:{agent_id}}}:record"

    def agent_heartbeats(self, agent_id: str) -> str:
        return f"{self.prefix}{{agent:{agent_id}}}:heartbeats"

    def agent_command_history(self, agent_id: str) -> str:
        return f"{self.prefix}{{agent:{agent_id}}}:command-history"

    @property
    def agents_index(self) -> str:
        return f"{self.prefix}agents"

    @property
    def readmodel_version(self) -> str:
        """Counter raised by every write of what the web UI shows (agent and rule documents, agent key records, the
        admin's manual rules and access groups), in the same transaction or script as the write, so the UI's live
        updates compare one number instead of reading every document. Its first writer starts it at a random value
        (SET NX before INCR): after a loss of data it does not count back up to a value a page has already seen."""
        return f"{self.prefix}readmodel-version"

    def api_key(self, key_hash: str) -> str:
        return f"{self.prefix}apikey:{key_hash}"

    @property
    def api_keys_index(self) -> str:
        return f"{self.prefix}apikeys"

    # Notifications that an agent has commands waiting (one pub/sub channel for all API processes).
    @property
    def command_notifications(self) -> str:
        return f"{self.prefix}notify:commands"

    # A channel nobody listens to: a PUBLISH on it, then WAIT, tells that replicas hold every write made before
    # (``redisconn.replicated``).
    @property
    def replicated_channel(self) -> str:
        return f"{self.prefix}replicated"

    # Rules read model and time-ordered deletions.
    def rule(self, rule_key: str) -> str:
        return f"{self.prefix}rule:{rule_key}"

    @property
    def rules_index(self) -> str:
        return f"{self.prefix}rules"

    @property
    def pending_deletions(self) -> str:
        return f"{self.prefix}pending-deletions"

    @property
    def admin_audit(self) -> str:
        """List (newest first, capped) of admin actions the API records with who asked and when, such as a rule's
        forced deletion (``flareport audit``)."""
        return f"{self.prefix}admin:audit"

    # Per-target coordination between replicas.
    def target_lease(self, target: str) -> str:
        return f"{self.prefix}{{target:{target}}}:lease"

    def target_applied(self, target: str) -> str:
        return f"{self.prefix}{{target:{target}}}:applied"

    @property
    def cf_rate_bucket(self) -> str:
        """Hash: how many Cloudflare calls may start now (``tokens``) as of ``at``, for the API's status."""
        return f"{self.prefix}cf:rate-bucket"

    @property
    def cf_rate_calls(self) -> str:
        """List: the Redis times (ms) of the Cloudflare calls admitted within the rate limit's last span."""
        return f"{self.prefix}cf:rate-calls"

    @property
    def cf_rate_recent(self) -> str:
        """Sorted set: the per-second cap's calls, by the Redis time (ms) each ended (or, in flight, its hold)."""
        return f"{self.prefix}cf:rate-recent"

    @property
    def cf_rate_standing(self) -> str:
        """Hash: Cloudflare's standing from its ``Ratelimit`` headers: calls it still allows us (``left``) until
        its window resets (``until``, Redis time in ms)."""
        return f"{self.prefix}cf:rate-standing"

    @property
    def cf_rate_serial(self) -> str:
        """Counter: Cloudflare calls ever admitted (orders an answer's standing against the calls admitted since)."""
        return f"{self.prefix}cf:rate-serial"

    @property
    def cf_pause_until(self) -> str:
        return f"{self.prefix}cf:pause-until"

    # API-owned state (written only by the API).
    def agent_quota_refusals(self, agent_id: str) -> str:
        """Hash: quota name -> JSON ``QuotaRefusal`` (the last refusal of that limit, and how many so far)."""
        return f"{self.prefix}{{agent:{agent_id}}}:quota-refusals"

    def agent_last_seq(self, agent_id: str) -> str:
        """The highest event sequence number the API accepted from this agent (a plain integer string)."""
        return f"{self.prefix}{{agent:{agent_id}}}:last-seq"

    def agent_event_bucket(self, agent_id: str) -> str:
        """Hash {tokens, ms}: the agent's events token bucket (``quotas.events_per_second``); absent when full."""
        return f"{self.prefix}{{agent:{agent_id}}}:event-bucket"

    def agent_api_keys(self, agent_id: str) -> str:
        """Set of the key ids bound to this agent (so a roll or a removal finds every key of the agent)."""
        return f"{self.prefix}{{agent:{agent_id}}}:api-keys"

    def agent_secret(self, agent_id: str, ref: str) -> str:
        """String with a TTL: one secret (a tunnel token, a rolled key) for the agent's command that names ``ref``;
        no shared stream carries it (``flareport_common.parcels``). The API deletes it at the command's ack."""
        return f"{self.prefix}{{agent:{agent_id}}}:secret:{ref}"

    def agent_longpolls(self, agent_id: str) -> str:
        """Sorted set: the agent's open command long-polls across API replicas (member: poll id, score: Redis
        time in ms when the slot lapses even if its replica never released it)."""
        return f"{self.prefix}{{agent:{agent_id}}}:longpolls"

    @property
    def keys_recovered_at(self) -> str:
        """Epoch seconds of the newest agent key the API recovered from its proof (the store had lost it): evidence
        that Redis lost its data, which holds back the removal of records while the agents report again."""
        return f"{self.prefix}recovery:keys-recovered-at"

    @property
    def data_epoch(self) -> str:
        """``sealed:<epoch s>`` or ``open:<epoch s>``: whether agent keys may be restored from their proof. Written
        with the first agent key of a data set (sealed) or when a key is presented to a Redis that holds no key at
        all (open: Redis lost its data); its absence is the evidence of a loss (``flareport_api.recovery``)."""
        return f"{self.prefix}recovery:data-epoch"

    def keys_restored(self, minute: int) -> str:
        """Counter (expires): agent keys restored from their proof in this minute, by all API replicas."""
        return f"{self.prefix}recovery:keys-restored:{minute}"

    @property
    def recovery_released(self) -> str:
        """The ``keys_recovered_at`` value whose hold has ended and been followed by a full re-plan (reconciler)."""
        return f"{self.prefix}recovery:released"

    @property
    def api_rule_overrides(self) -> str:
        """Hash rule key (hostname + path) -> the admin's override of that container rule as last written (the
        reconciler gets it as an intent and keeps it in the hostname's claims hash)."""
        return f"{self.prefix}api:rule-overrides"

    @property
    def api_manual_rules(self) -> str:
        """Hash rule_id -> the admin's manual rule as last written (the reconciler gets it as an intent)."""
        return f"{self.prefix}api:manual-rules"

    @property
    def api_access_groups(self) -> str:
        """Hash group_id -> the admin's access group as last written (the reconciler gets it as an intent)."""
        return f"{self.prefix}api:access-groups"

    # dns-worker: the desired state last applied to a target (for verify_target) and what it observed there.
    def target_desired(self, target: str) -> str:
        return f"{self.prefix}{{target:{target}}}:desired"

    def target_observed(self, target: str) -> str:
        return f"{self.prefix}{{target:{target}}}:observed"

    def cf_zone_records(self, zone_id: str) -> str:
        """Hash: record name -> JSON list of the zone's A/AAAA/CNAME records on that name (observed cache)."""
        return f"{self.prefix}cf:zone:{zone_id}:records"

    def cf_zone_refused(self, zone_id: str) -> str:
        """Hash: fingerprint of a write Cloudflare refused in this zone -> JSON {error, until} (left out of the
        zone's next batches until then, so one bad record does not sink every later batch)."""
        return f"{self.prefix}cf:zone:{zone_id}:refused"

    @property
    def cf_zones(self) -> str:
        return f"{self.prefix}cf:zones"

    @property
    def adopt_grants(self) -> str:
        """Hash: hostname -> JSON {granted_at}: an admin's one-time permission to take over the foreign DNS records
        on that name for the rule that wants it (``flareport rules adopt``); the dns-worker removes it once used."""
        return f"{self.prefix}admin:adopt-grants"

    @property
    def cf_created_tunnels(self) -> str:
        return f"{self.prefix}cf:created-tunnels"

    @property
    def cf_tunnels(self) -> str:
        """JSON ``flareport_common.tunnelview.TunnelsDocument``: the account's tunnels and connectors as the
        dns-worker last listed them."""
        return f"{self.prefix}cf:tunnels"

    # Reconciler state (written only by the reconciler; replicas share it).
    def agent_inventory(self, agent_id: str) -> str:
        """The agent's pruning floor: the newest sequence number of its pruned (long stopped) container entries."""
        return f"{self.prefix}{{agent:{agent_id}}}:inventory"

    def agent_hostnames(self, agent_id: str) -> str:
        """Set of hostnames the agent (its containers and manual rules pinned to it) has claimed."""
        return f"{self.prefix}{{agent:{agent_id}}}:hostnames"

    def hostname_claims(self, hostname: str) -> str:
        """Hash claim id -> claim of every source (container or manual rule) that wants this hostname."""
        return f"{self.prefix}claims:{hostname}"

    def target_hostnames(self, target: str) -> str:
        """Set of hostnames that may belong to a tunnel or zone target; planning removes those without claims."""
        return f"{self.prefix}{{target:{target}}}:hostnames"

    def target_state(self, target: str) -> str:
        """Coalescing state of a target: job in flight, pending flag, last emitted version and members."""
        return f"{self.prefix}{{target:{target}}}:state"

    @property
    def targets_index(self) -> str:
        return f"{self.prefix}targets"

    @property
    def targets_waiting(self) -> str:
        """Sorted set of targets held for their coalescing window (score: when the plan is due, epoch ms)."""
        return f"{self.prefix}targets:waiting"

    @property
    def dirty_hostnames(self) -> str:
        """Sorted set hostname -> time it was marked; what a crashed replica left half done is redone from here."""
        return f"{self.prefix}dirty-hostnames"

    @property
    def agents_last_seen(self) -> str:
        return f"{self.prefix}agents-last-seen"

    @property
    def redis_history(self) -> str:
        """The replication id (``master_replid``) of the Redis the reconciler last saw. A failover or a restart
        changes it; the last writes before it may be gone, so the reconciler then has every agent send its
        inventory again and plans every target again (``flareport_reconciler.failover``)."""
        return f"{self.prefix}redis-history"

    @property
    def tunnel_agents(self) -> str:
        """Hash tunnel id -> agent id."""
        return f"{self.prefix}tunnel-agents"

    @property
    def access_groups(self) -> str:
        return f"{self.prefix}access-groups"

    @property
    def access_facts(self) -> str:
        """Hash ``owner_email``, ``otp_idp_id``, ``checked_at``: what the dns-worker found in the Cloudflare account
        for the system group ``authenticated-default`` (a field it cannot find is absent, never a stale guess)."""
        return f"{self.prefix}access-facts"

    @property
    def drift_lease(self) -> str:
        return f"{self.prefix}drift-lease"

    def hostname_state(self, hostname: str) -> str:
        """What the reconciler last derived from a hostname's claims: its targets and read-model documents."""
        return f"{self.prefix}hostname:{hostname}"

    @property
    def reconciler_manual_claims(self) -> str:
        """Hash manual rule id -> the claim the reconciler made for it (to withdraw it on change or delete)."""
        return f"{self.prefix}reconciler:manual-claims"

    def agent_container(self, agent_id: str, container_id: str) -> str:
        """One container's inventory entry (its own key, so events of different containers never contend)."""
        return f"{self.prefix}{{agent:{agent_id}}}:container:{container_id}"

    def agent_containers(self, agent_id: str) -> str:
        """Set of the container ids the reconciler knows for an agent (what a snapshot must compare against)."""
        return f"{self.prefix}{{agent:{agent_id}}}:containers"

    def agent_snapshot(self, agent_id: str) -> str:
        """The newest inventory snapshot applied for an agent (sequence number, time, container ids)."""
        return f"{self.prefix}{{agent:{agent_id}}}:snapshot"

    def ui_session(self, session_hash: str) -> str:
        """Hash user, csrf, created_at of one web UI session, keyed by the SHA-256 of its cookie (with a TTL)."""
        return f"{self.prefix}ui:session:{session_hash}"

    @property
    def ui_admin_password_hash(self) -> str:
        """The argon2 hash of the generated admin password (first start without a configured password)."""
        return f"{self.prefix}ui:admin-password-hash"

    def api_auth_failures(self, address: str) -> str:
        """Failed authentications from one address, counted by every API replica (a fixed window)."""
        return f"{self.prefix}api:auth-failures:{address}"

    def ui_login_failures(self, address: str) -> str:
        """Counter of failed web UI logins from one client address (expires with the window)."""
        return f"{self.prefix}ui:login-failures:{address}"

    def ui_oidc_state(self, state: str) -> str:
        """One pending single sign-on (nonce, PKCE verifier, next page), taken back once with GETDEL (with a TTL)."""
        return f"{self.prefix}ui:oidc-state:{state}"
