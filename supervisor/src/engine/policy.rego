# OpenShell network policy: the reference semantics of every proxy decision.
#
# data.policy is the compiled policy (see engine/ir.rs): entries in document order, each with
# binary patterns and endpoints; every pattern is {"kind": "any"|"lit"|"re", "v": ...}.
# input (network): host, port, binary, [ips], [pinned]
# input (l7):      host, port, binary, method, path, query ([[key, value], ...])
package openshell

import rego.v1

entries := data.policy.entries

matches(p, _) if p.kind == "any"

matches(p, s) if {
	p.kind == "lit"
	p.v == s
}

matches(p, s) if {
	p.kind == "re"
	regex.match(p.v, s)
}

# [entry, endpoint] for every endpoint that names this host and port.
host_port contains [i, j] if {
	some i, e in entries
	some j, ep in e.endpoints
	input.port in ep.ports
	matches(ep.host, input.host)
}

binary_ok(i) if {
	some b in entries[i].binaries
	matches(b, input.binary)
}

# ... and whose entry lets this binary use it.
permitted contains p if {
	some p in host_port
	binary_ok(p[0])
}

endpoint(p) := entries[p[0]].endpoints[p[1]]

deny(layer, policy, reason) := {"action": "deny", "layer": layer, "policy": policy, "reason": reason, "inspect": false}

# --- network (L4 + SSRF) ---

blocked_class(ip) := [r[1] | some r in data.policy.ranges.blocked; net.cidr_contains(r[0], ip)]

internal_class(ip) := [r[1] | some r in data.policy.ranges.internal; net.cidr_contains(r[0], ip)]

ip_allowed(ip) if {
	some p in permitted
	endpoint(p).host_ip == ip
}

ip_allowed(ip) if {
	some p in permitted
	some c in endpoint(p).allowed_ips
	net.cidr_contains(c, ip)
}

ssrf_problems contains [ip, kinds[0]] if {
	some ip in input.ips
	kinds := blocked_class(ip)
	count(kinds) > 0
}

ssrf_problems contains [ip, kinds[0]] if {
	not input.pinned
	some ip in input.ips
	count(blocked_class(ip)) == 0
	kinds := internal_class(ip)
	count(kinds) > 0
	not ip_allowed(ip)
}

binary_list(i) := concat(", ", [b.src | some b in entries[i].binaries])

network := d if {
	count(entries) == 0
	d := deny("l4", null, "network connections not allowed by policy")
} else := d if {
	count(host_port) == 0
	d := deny("l4", null, sprintf("endpoint %s:%d is not allowed by any policy", [input.host, input.port]))
} else := d if {
	count(permitted) == 0
	i := min(host_port)[0]
	d := deny("l4", entries[i].key, sprintf(
		"binary '%s' is not allowed to reach %s:%d (policy '%s' allows %s)",
		[input.binary, input.host, input.port, entries[i].key, binary_list(i)],
	))
} else := d if {
	count(ssrf_problems) > 0
	prob := min(ssrf_problems)
	d := deny("ssrf", null, sprintf(
		"%s:%d resolves to %s (%s), which the sandbox may not reach unless allowed_ips covers it",
		[input.host, input.port, prob[0], prob[1]],
	))
} else := d if {
	p := min(permitted)
	d := {
		"action": "allow",
		"layer": "l4",
		"policy": entries[p[0]].key,
		"reason": "allowed by policy",
		"inspect": count([q | some q in permitted; endpoint(q).l7]) > 0,
	}
}

# --- L7 (method, path, query) ---

method_ok(r) if r.method == "*"

method_ok(r) if r.method == input.method

method_ok(r) if {
	r.method == "GET"
	input.method == "HEAD"
}

values(key) := [kv[1] | some kv in input.query; kv[0] == key]

# Allow: every listed key is present and every one of its values matches.
query_allows(r) if {
	every q in r.query {
		count(values(q.key)) > 0
		every v in values(q.key) {
			some g in q.globs
			matches(g, v)
		}
	}
}

# Deny: every listed key has some value that matches.
query_denies(r) if {
	every q in r.query {
		some v in values(q.key)
		some g in q.globs
		matches(g, v)
	}
}

rule_allows(r) if {
	method_ok(r)
	matches(r.path, input.path)
	query_allows(r)
}

rule_denies(r) if {
	method_ok(r)
	matches(r.path, input.path)
	query_denies(r)
}

denied_here(ep) if {
	some r in ep.deny
	rule_denies(r)
}

enforce_denies contains p if {
	some p in permitted
	ep := endpoint(p)
	ep.l7
	not ep.audit
	denied_here(ep)
}

allows contains p if {
	some p in permitted
	not endpoint(p).l7
}

allows contains p if {
	some p in permitted
	ep := endpoint(p)
	ep.l7
	not denied_here(ep)
	some r in ep.allow
	rule_allows(r)
}

audits contains p if {
	some p in permitted
	ep := endpoint(p)
	ep.l7
	ep.audit
}

l7 := d if {
	count(permitted) == 0
	d := deny("l7", null, sprintf(
		"%s %s not permitted by policy: no policy lets '%s' reach %s:%d",
		[input.method, input.path, input.binary, input.host, input.port],
	))
} else := d if {
	count(enforce_denies) > 0
	d := deny("l7", entries[min(enforce_denies)[0]].key, sprintf("%s %s blocked by a deny rule", [input.method, input.path]))
} else := d if {
	count(allows) > 0
	d := {"action": "allow", "layer": "l7", "policy": entries[min(allows)[0]].key, "reason": "allowed by policy", "inspect": true}
} else := d if {
	count(audits) > 0
	d := {
		"action": "audit",
		"layer": "l7",
		"policy": entries[min(audits)[0]].key,
		"reason": sprintf("%s %s not permitted by policy (audit: forwarded)", [input.method, input.path]),
		"inspect": true,
	}
} else := d if {
	d := deny("l7", entries[min(permitted)[0]].key, sprintf("%s %s not permitted by policy", [input.method, input.path]))
}
