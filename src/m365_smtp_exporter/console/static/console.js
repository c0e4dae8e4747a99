// Live console: re-renders the sections from /api/v1/status and answers the planner form.
// Same markup as page.py. Every value is set with textContent: nothing is parsed as HTML.
"use strict";

(function () {
  const POLL_MS = 1000 * Number(document.body.dataset.pollSeconds || 5);

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "cls") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }
  const dash = (value) => (value === null || value === undefined || value === "" ? "-" : String(value));
  const cell = (value, cls) => el("td", cls ? { cls: cls, text: dash(value) } : { text: dash(value) });

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "-";
    seconds = Math.round(seconds);
    if (seconds < 90) return seconds + " s";
    const minutes = Math.round(seconds / 60);
    if (minutes < 90) return minutes + " min";
    return Math.floor(minutes / 60) + " h " + String(minutes % 60).padStart(2, "0") + " min";
  }

  function badge(ok, yes, no) {
    if (ok === null || ok === undefined) return el("span", { cls: "badge unknown", text: "unknown" });
    return el("span", { cls: "badge " + (ok ? "ok" : "bad"), text: ok ? yes : no });
  }

  function table(head, rows, cls) {
    const tr = el("tr", {}, head.map((h) => el("th", { text: h })));
    return el("table", { cls: cls }, [el("thead", {}, [tr]), el("tbody", {}, rows)]);
  }

  function quotaRow(tenant, row) {
    const key = tenant + "|" + (row.sender || "") + "|" + row.limit;
    return el("tr", { "data-key": key, cls: "quota" + (row.utilization >= 0.8 ? " hot" : "") }, [
      cell(row.sender || "(tenant)"),
      cell(row.limit),
      cell(row.used, "used num"),
      cell(row.limit_value, "limit num"),
      cell(row.remaining, "remaining num"),
      cell(Math.round(row.utilization * 100) + "%", "num"),
      cell(row.recovery_seconds ? duration(row.recovery_seconds) : "-", "recovery"),
    ]);
  }

  // Microsoft's own word on Exchange Online (page.py microsoft_text writes the same line)
  function microsoftText(view) {
    if (!view) return "Microsoft service health: not monitored";
    if (view.pull_ok === null) return "Microsoft service health: not read yet";
    const status = view.exchange_online_status || "unknown";
    const issues = view.issues;
    if (issues.length === 0) return "Microsoft: Exchange Online " + status + "; no open issue";
    const first = issues[0];
    const more = issues.length > 1 ? " (+" + (issues.length - 1) + " more)" : "";
    const stale = view.pull_ok ? "" : " (last pull failed: as last read)";
    return "Microsoft: Exchange Online " + status + "; open " + first.classification + " " +
      first.id + ": " + first.title + more + stale;
  }

  function tenantCard(tenant) {
    let traceText = "trace pulls off";
    if (tenant.trace) {
      const t = tenant.trace;
      const state = t.last_pull_ok === true ? "ok" : t.last_pull_ok === false ? "failing" : "no pull yet";
      traceText = "trace: " + state + "; last good pull " + (t.last_success_at || "never") +
        "; lag " + duration(t.lag_seconds);
    }
    const b = tenant.graph_budget;
    const budgetText = b ? "Graph budget: " + b.remaining + " of " + b.limit + " left" : "Graph budget: -";
    const head = ["sender", "limit", "used", "of", "left", "use", "recovers in"];
    return el("section", { cls: "card tenant", "data-tenant": tenant.name }, [
      el("h3", {}, [document.createTextNode(tenant.name + " "), badge(tenant.can_send, "can send", "cannot send")]),
      el("p", { cls: "meta", text: "probes ok " + tenant.probes_ok + " / " + tenant.probes_total +
        "; last success " + (tenant.last_success_at || "never") }),
      el("p", { cls: "meta trace", text: traceText }),
      el("p", { cls: "meta budget", text: budgetText }),
      el("p", { cls: "meta microsoft", text: microsoftText(tenant.microsoft) }),
      table(head, tenant.quota.map((row) => quotaRow(tenant.name, row)), "quota-table"),
    ]);
  }

  function replyText(probe) {
    const r = probe.reply;
    if (!r) return probe.detail || "";
    return [r.code, r.enhanced_code, r.text].filter((p) => p !== null && p !== "").join(" ");
  }

  function probeRows(probe) {
    const cls = probe.state === "ok" ? "ok" : probe.state === "failing" ? "bad" : "unknown";
    let transcript = probe.transcript.map((line) =>
      line.elapsed.toFixed(3).padStart(8) + "  " + line.direction + ": " + line.text).join("\n");
    if (probe.transcript_note) transcript = (transcript ? transcript + "\n" : "") + probe.transcript_note;
    const cert = probe.tls && probe.tls.cert_days_left !== null ? probe.tls.cert_days_left : null;
    const details = el("details", {}, [el("summary", { text: "transcript" }), el("pre", { text: transcript })]);
    const open = document.querySelector('tr.probe-detail[data-probe="' + CSS.escape(probe.name) + '"] details');
    if (open && open.open) details.open = true;
    return [
      el("tr", { cls: "probe", "data-probe": probe.name }, [
        cell(probe.name), cell(probe.tenant),
        el("td", {}, [el("span", { cls: "badge " + cls, text: probe.state })]),
        cell(probe.last_run_at), cell(probe.last_success_at), cell(probe.failing_since),
        cell(replyText(probe), "reply"),
      ]),
      el("tr", { cls: "probe-detail", "data-probe": probe.name }, [
        el("td", { colspan: "7" }, [
          el("p", { cls: "hint", text: probe.hint || "" }),
          el("p", { cls: "cert", text: cert === null ? "" : "server certificate: " + cert + " days left" }),
          details,
        ]),
      ]),
    ];
  }

  function deliveryRow(item) {
    const last = item.success === null ? "-" : item.success ? "delivered" : "junk or lost";
    const outcomes = Object.entries(item.outcomes).map(([k, v]) => k + " " + v).join(", ") || "-";
    const auth = Object.entries(item.auth).map(([k, v]) => k + "=" + v).join(", ") || "-";
    const latency = item.latency_avg_seconds === null ? null : item.latency_avg_seconds.toFixed(1) + " s";
    return el("tr", { "data-probe": item.probe }, [
      cell(item.probe), cell(last), cell(outcomes), cell(latency), cell(item.pending), cell(auth),
    ]);
  }

  function domainRow(item) {
    let spf = item.spf === null ? "-" : item.spf.valid ? "valid" : "invalid";
    if (item.spf && item.spf.all) spf += ", " + item.spf.all + " all";
    const dkim = item.dkim === null ? "-" :
      item.dkim.map((d) => d.selector + " " + (d.enabled ? "on" : "off")).join(", ") || "none";
    const dmarc = item.dmarc === null ? "-" : item.dmarc.policy;
    return el("tr", { "data-domain": item.domain }, [
      cell(item.domain), cell(spf), cell(dkim), cell(dmarc), cell(item.checked_at),
    ]);
  }

  function replace(id, node) {
    const holder = document.getElementById(id);
    holder.replaceChildren(node);
  }

  function render(status) {
    document.getElementById("generated-at").textContent = status.generated_at;
    const cards = el("div", { cls: "cards-inner" }, status.tenants.map(tenantCard));
    document.getElementById("tenants").replaceChildren(...cards.childNodes);
    replace("probes", table(["probe", "tenant", "state", "last run", "last success", "failing since", "reply"],
      status.probes.flatMap(probeRows), "probe-table"));
    replace("delivery", table(["probe", "last mail", "outcomes", "avg latency", "pending", "SPF/DKIM/DMARC"],
      status.delivery.map(deliveryRow), "delivery-table"));
    replace("domains", table(["domain", "SPF", "DKIM", "DMARC", "checked"],
      status.domains.map(domainRow), "domain-table"));
  }

  function setLive(ok, text) {
    const live = document.getElementById("live");
    live.className = "badge " + (ok ? "ok" : "bad");
    live.textContent = text;
  }

  async function poll() {
    try {
      const response = await fetch("/api/v1/status", { cache: "no-store", credentials: "same-origin" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      render(await response.json());
      setLive(true, "live");
    } catch (error) {
      setLive(false, "stale: " + error.message);
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  function renderPlan(plan) {
    const out = [];
    out.push(el("p", { cls: "plan-now", text: (plan.can_start_now ? "Can start now: " : "Cannot start now: ") +
      plan.now.recipients + " of " + plan.request.recipients + " recipients can go under every limit" +
      (plan.now.binding ? " (bound by " + plan.now.binding + ")" : "") }));
    out.push(el("p", { cls: "plan-finish", text: plan.finish_at
      ? "All " + plan.request.messages + " messages sent by " + plan.finish_at + " (" +
        duration(plan.duration_seconds) + "), mostly held by " + (plan.binding || "nothing")
      : plan.unscheduled_recipients + " recipients do not fit in the planning horizon" }));
    const limits = plan.limits.map((l) => el("tr", { "data-limit": l.name }, [
      cell(l.name), cell(l.scope), cell(l.applies_to), cell(l.used, "num"), cell(l.limit, "num"),
      cell(l.remaining, "remaining num"),
    ]));
    out.push(table(["limit", "scope", "counts", "used", "of", "left"], limits, "plan-limits"));
    const steps = plan.schedule.map((s) => el("tr", {}, [
      cell(s.start), cell(s.end), cell(s.recipients, "num"), cell(s.recipients_per_minute + "/min"),
      cell(s.binding),
    ]));
    out.push(table(["from", "to", "recipients", "rate", "held by"], steps, "plan-schedule"));
    out.push(el("ul", { cls: "plan-notes" }, plan.notes.map((n) => el("li", { text: n }))));
    return out;
  }

  async function submitPlan(event) {
    event.preventDefault();
    const form = event.target;
    const query = new URLSearchParams();
    for (const [key, value] of new FormData(form).entries()) if (value !== "") query.append(key, value);
    const result = document.getElementById("plan-result");
    try {
      const response = await fetch("/api/v1/plan?" + query.toString(), { cache: "no-store", credentials: "same-origin" });
      const body = await response.json();
      if (!response.ok) {
        result.replaceChildren(el("p", { cls: "plan-error bad", text: body.error || "HTTP " + response.status }));
        return;
      }
      result.replaceChildren(...renderPlan(body));
    } catch (error) {
      result.replaceChildren(el("p", { cls: "plan-error bad", text: String(error.message) }));
    }
  }

  document.getElementById("plan-form").addEventListener("submit", submitPlan);
  poll();
})();
