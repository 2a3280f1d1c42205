// The live board: follows /events (Server-Sent Events) and updates the server-rendered page
// in place. No build step, no library, nothing fetched but /events. The countdown runs on the
// server's clock: every event carries the server's time, and the page keeps the offset between
// it and this browser's clock. Cells are found by the classes and data- attributes that
// pages.rs renders; the two files change together.
"use strict";
(function () {
  const body = document.body;
  let offset = Number(body.dataset.now) - Date.now();
  const only = body.dataset.item ? Number(body.dataset.item) : null;
  const projector = body.classList.contains("projector");
  const serverNow = () => Date.now() + offset;
  const RECENT_RESULTS = 50; // web/board.rs RECENT_RESULTS

  function clock(ms) {
    return new Date(ms).toISOString().slice(11, 19) + " UTC";
  }

  function timeLeft(ends, now) {
    const s = Math.floor(Math.max(0, ends - now) / 1000);
    const pad = (n) => String(n).padStart(2, "0");
    if (s === 0) return "ending";
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + pad(s % 60) + "s";
    return Math.floor(s / 3600) + "h " + pad(Math.floor((s % 3600) / 60)) + "m";
  }

  // As web/board.rs BoardItem::result and BoardItem::terms.
  function result(item) {
    if (item.cancelled != null) return "cancelled by the operator: " + item.cancelled;
    if (item.leader && item.price) return "sold to " + item.leader + " for " + item.price;
    if (item.bids > 0 && item.reserve_met === false) return "not sold: the reserve was not met";
    return "not sold";
  }

  function terms(item) {
    const parts = [];
    if (item.reserve_met === true) parts.push("reserve met");
    if (item.reserve_met === false) parts.push("reserve not met");
    if (item.buy_now) parts.push("buy now " + item.buy_now);
    return parts.join(" · ");
  }

  function cell(row, cls, text) {
    const el = row.querySelector("." + cls);
    if (el && el.textContent !== String(text)) {
      el.textContent = text;
      el.classList.remove("changed");
      void el.offsetWidth; // restart the highlight
      el.classList.add("changed");
    }
  }

  function td(cls, text) {
    const el = document.createElement("td");
    el.className = cls;
    el.textContent = text;
    return el;
  }

  function link(item, base) {
    const a = document.createElement("a");
    a.href = base + item.item;
    a.textContent = item.item;
    return a;
  }

  // The board: a row per open item, a row per result.
  function onBoard(item) {
    const open = document.querySelector("#open tbody");
    let row = open.querySelector('tr[data-item="' + item.item + '"]');
    if (item.open) {
      if (!row) {
        row = document.createElement("tr");
        row.dataset.item = item.item;
        const first = td("item", "");
        first.appendChild(link(item, projector ? "/projector/" : "/item/"));
        row.append(first, td("description", item.description), td("seller", item.seller),
          td("min", ""), td("price", ""), td("terms", ""), td("leader", ""), td("bids", ""),
          td("left", ""));
      }
      // Kept in the server's order: soonest end first.
      row.dataset.ends = item.ends_at;
      const later = Array.from(open.children).find(
        (r) => r !== row && Number(r.dataset.ends) > item.ends_at);
      if (later) open.insertBefore(row, later);
      else open.appendChild(row);
      cell(row, "min", item.min);
      cell(row, "price", item.price || "");
      cell(row, "terms", terms(item));
      cell(row, "leader", item.leader || "");
      cell(row, "bids", item.bids);
      row.querySelector(".left").dataset.ends = item.ends_at;
    } else {
      if (row) row.remove();
      const results = document.querySelector("#results tbody");
      if (results && !results.querySelector('tr[data-item="' + item.item + '"]')) {
        const r = document.createElement("tr");
        r.dataset.item = item.item;
        const first = td("item", "");
        first.appendChild(link(item, "/item/"));
        r.append(first, td("description", item.description), td("result", result(item)),
          td("closed", item.closed_at ? clock(item.closed_at) : ""));
        results.prepend(r);
        // As many as the server keeps.
        while (results.children.length > RECENT_RESULTS) results.lastElementChild.remove();
      }
    }
    const none = document.getElementById("none-open");
    if (none) none.hidden = open.children.length > 0;
  }

  // One item's page: its facts and its bids.
  function onItem(item, bid) {
    const facts = document.getElementById("facts");
    const history = document.querySelector("#history tbody");
    const shown = Number(facts.dataset.shown);
    const next = bid && item.bids === shown + 1;
    if (item.bids !== shown && !next) {
      // Bids this page was not told of one by one (it fell behind, or the item runs on
      // another node of a cluster): read them all again.
      location.reload();
      return;
    }
    cell(facts, "min", item.min);
    cell(facts, "price", item.price || "");
    cell(facts, "terms", terms(item));
    cell(facts, "leader", item.leader || "");
    cell(facts, "bids", item.bids);
    cell(facts, "ends", clock(item.ends_at));
    cell(facts, "extensions", item.extensions);
    const left = facts.querySelector(".left");
    left.dataset.ends = item.ends_at;
    left.dataset.open = item.open;
    cell(facts, "result", item.open ? "open" : result(item));
    if (next) {
      // The same words as pages.rs `note`.
      const notes = [];
      if (bid.amount === null) notes.push("a proxy bid, outbid at once (its maximum stays private)");
      if (bid.extended) notes.push("extended the end to " + clock(bid.ends_at));
      const r = document.createElement("tr");
      r.dataset.ends = bid.ends_at;
      r.append(td("at", clock(bid.at)), td("bidder", bid.bidder), td("amount", bid.amount || ""),
        td("note", notes.join("; ")));
      history.appendChild(r);
      facts.dataset.shown = shown + 1;
      const none = document.getElementById("no-bids");
      if (none) none.hidden = true;
    }
  }

  function tick() {
    const now = serverNow();
    document.getElementById("clock").textContent = clock(now);
    for (const el of document.querySelectorAll("[data-ends]")) {
      if (el.tagName === "TR") continue;
      el.textContent = el.dataset.open === "false" ? "closed" : timeLeft(Number(el.dataset.ends), now);
    }
  }

  const live = document.getElementById("live");
  const url = "/events?since=" + encodeURIComponent(body.dataset.since) + (only ? "&item=" + only : "");
  const events = new EventSource(url);
  events.addEventListener("open", () => { live.textContent = " · live"; });
  events.addEventListener("item", (e) => {
    const d = JSON.parse(e.data);
    offset = d.now - Date.now();
    if (only === null) onBoard(d.item);
    else if (d.item.item === only) onItem(d.item, d.bid);
    tick();
  });
  events.addEventListener("reload", () => location.reload());
  events.addEventListener("error", () => {
    if (events.readyState === EventSource.CLOSED) {
      // Refused (too many streams) or gone for good: the browser will not retry, so re-read
      // the page a little later (it shows the state even without the stream).
      live.textContent = " · not live: re-reading the page every 10 s";
      setTimeout(() => location.reload(), 10000);
    } else {
      live.textContent = " · reconnecting";
    }
  });
  tick();
  setInterval(tick, 250);
})();
