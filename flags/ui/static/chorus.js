// chorus web UI: live updates over the UI's events stream (Server-Sent Events).
// On each `flag` or `snapshot` event (coalesced over 5 ms, and while a fetch is
// under way) it fetches the page again and swaps every [data-live][id] element for
// its new version, keeping what the user is typing. The page works without this
// script.
(function () {
  "use strict";

  var COALESCE_MS = 5;  // events of one chunk arrive together: one fetch for them
  var status = document.getElementById("connection");
  var url = document.body.getAttribute("data-events");

  function say(text) {
    if (status) {
      status.textContent = text;
    }
  }

  // The filter on the flags page narrows the rows as one types.
  function applyFilter() {
    var input = document.getElementById("filter");
    var body = document.getElementById("flags-body");
    if (!input || !body) {
      return;
    }
    var needle = input.value.toLowerCase();
    Array.prototype.forEach.call(body.rows, function (row) {
      var link = row.querySelector("td.name a");
      if (link) {
        row.hidden = link.textContent.toLowerCase().indexOf(needle) === -1;
      }
    });
  }

  var filter = document.getElementById("filter");
  if (filter) {
    filter.addEventListener("input", applyFilter);
  }

  // Carry what the user typed, what they unfolded, and the focus, from an old
  // element to its new version.
  function carryInputs(old, fresh) {
    old.querySelectorAll("input[id], textarea[id]").forEach(function (field) {
      var twin = fresh.querySelector("#" + CSS.escape(field.id));
      if (twin && field.type !== "hidden" && field.value !== field.defaultValue) {
        twin.value = field.value;
      }
    });
    old.querySelectorAll("details[id]").forEach(function (folded) {
      var twin = fresh.querySelector("#" + CSS.escape(folded.id));
      if (twin) {
        twin.open = folded.open;
      }
    });
  }

  function swap(doc) {
    var focused = document.activeElement && document.activeElement.id;
    document.querySelectorAll("[data-live][id]").forEach(function (old) {
      var fresh = doc.getElementById(old.id);
      if (fresh && fresh.hasAttribute("data-live")) {
        var copy = document.importNode(fresh, true);
        carryInputs(old, copy);
        old.replaceWith(copy);
      }
    });
    if (focused) {
      var again = document.getElementById(focused);
      if (again && again !== document.activeElement) {
        again.focus();
      }
    }
    applyFilter();
  }

  var pending = null;
  var fetching = false;
  var again = false;

  function refresh() {
    pending = null;
    if (fetching) {
      again = true;
      return;
    }
    fetching = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null) {
          swap(new DOMParser().parseFromString(html, "text/html"));
        }
      })
      .catch(function () { /* the stream's error handler says we are reconnecting */ })
      .then(function () {
        fetching = false;
        if (again) {
          again = false;
          schedule();
        }
      });
  }

  function schedule() {
    if (pending === null) {
      pending = window.setTimeout(refresh, COALESCE_MS);
    }
  }

  if (!url || !window.EventSource) {
    return;
  }
  var RETRY_MS = 2000;

  // EventSource reconnects by itself after a network error, but gives up for good
  // on an HTTP error (a node answering 503 while it restarts): then start anew.
  function connect() {
    var source = new EventSource(url);
    source.addEventListener("open", function () { say("live"); });
    source.addEventListener("error", function () {
      say("reconnecting…");
      if (source.readyState === EventSource.CLOSED) {
        window.setTimeout(connect, RETRY_MS);
      }
    });
    source.addEventListener("flag", schedule);
    source.addEventListener("snapshot", schedule);
  }

  say("connecting…");
  connect();
})();
