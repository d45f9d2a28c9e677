# The engine's decision written the way Gatekeeper / Ratify users write vulnerability
# policies: rules as data, counts over the report's vulnerabilities, deny if any deny rule
# fires, else audit if any audit rule fires. Used only by benches/core.rs to compare
# regorus with vulngate's engine on the same input (and checked to reach the same decision).
package vulngate

import rego.v1

sev_rank := {"critical": 4, "high": 3, "medium": 2, "low": 1, "negligible": 0, "unknown": 0}

field_value(s) := input.context.labels[s.key] if s.field == "label"
field_value(s) := input.context[s.field] if s.field != "label"

selector_ok(s) if {
	s.op == "equals"
	field_value(s) == s.value
}

selector_ok(s) if {
	s.op == "notEquals"
	not field_value(s) == s.value
}

selector_ok(s) if {
	s.op == "startsWith"
	startswith(field_value(s), s.value)
}

selector_ok(s) if {
	s.op == "endsWith"
	endswith(field_value(s), s.value)
}

selector_ok(s) if {
	s.op == "contains"
	contains(field_value(s), s.value)
}

in_scope(rule) if {
	every s in rule.scope {
		selector_ok(s)
	}
}

allowed(rule, v) if {
	some a in rule.allowed
	some id in v.ids
	a == id
}

filters_ok(c, v) if {
	not c.fixAvailable == true
	not c.fixAvailable == false
	not c.cvssAtLeast
}

filters_ok(c, v) if {
	c.fixAvailable == v.fix
	not c.cvssAtLeast
}

filters_ok(c, v) if {
	not c.fixAvailable == true
	not c.fixAvailable == false
	v.cvss >= c.cvssAtLeast
}

filters_ok(c, v) if {
	c.fixAvailable == v.fix
	v.cvss >= c.cvssAtLeast
}

counted(rule, c) := [v.id |
	some v in input.vulnerabilities
	sev_rank[v.severity] >= sev_rank[c.severity]
	filters_ok(c, v)
	not allowed(rule, v)
]

fires(rule) if {
	some c in rule.conditions
	c.severity
	count(counted(rule, c)) > c.maxCount
}

fires(rule) if {
	some c in rule.conditions
	c.cveIds
	some v in input.vulnerabilities
	some id in v.ids
	id in c.cveIds
	filters_ok(c, v)
	not allowed(rule, v)
}

firing contains [rule.action, rule.name] if {
	some rule in input.rules
	in_scope(rule)
	fires(rule)
}

denied := [n | some f in firing; f[0] == "deny"; n := f[1]]

audited := [n | some f in firing; f[0] == "audit"; n := f[1]]

decision := "deny" if {
	count(denied) > 0
} else := "audit" if {
	count(audited) > 0
} else := "allow"
