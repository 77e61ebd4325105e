/* mailadmin progressive enhancement. Every action also works without this file.
 *
 * - tz cookie: the browser's IANA time zone, read by mailadmin/timezones.py so dates
 *   show in the viewer's zone.
 * - <form data-confirm="Question?">: asks before submitting; on "OK" it adds the hidden
 *   field named by data-confirm-field (default "confirmed"=yes) so the server can skip its
 *   own confirmation page. Without JavaScript that page asks instead.
 * - <button data-copy="text" hidden>: shown and wired up to copy text to the clipboard.
 * - tables inside .table-wrap get each cell labelled with its column heading (data-label),
 *   so on a phone the stylesheet shows one block per row instead of a sideways scroll.
 * - <button data-inline formaction=...> in a table row: posts its form with fetch and puts the
 *   row the server sends back (X-Requested-With: fetch) in place of its own row, so the page
 *   keeps its search, sort, page and scroll position; the row's data-message is announced.
 *   Without scripts the same button posts and the server redirects back to the same list.
 * - <input type="checkbox" data-select-all="NAME" hidden>: shown; ticks every NAME box.
 * Loaded with defer from base.html; no inline script, so a strict CSP can forbid them.
 */
(function () {
  "use strict";

  function setTimeZoneCookie() {
    var zone;
    try {
      zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    } catch (e) {
      return;
    }
    if (!zone || !/^[A-Za-z0-9_+\-\/]{1,64}$/.test(zone)) return;
    var current = document.cookie.split("; ").filter(function (c) { return c.indexOf("tz=") === 0; })[0];
    if (current === "tz=" + zone) return;
    var secure = location.protocol === "https:" ? "; Secure" : "";
    document.cookie = "tz=" + zone + "; path=/; max-age=31536000; SameSite=Lax" + secure;
  }

  function confirmBeforeSubmit(event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    var submitter = event.submitter;
    var question = (submitter && submitter.getAttribute("data-confirm")) || form.getAttribute("data-confirm");
    if (!question) return;
    if (!window.confirm(question)) {
      event.preventDefault();
      return;
    }
    var name = form.getAttribute("data-confirm-field") || "confirmed";
    if (!form.querySelector('input[type="hidden"][name="' + name + '"]')) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = "yes";
      form.appendChild(input);
    }
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "visually-hidden";
      document.body.appendChild(area);
      area.select();
      var ok = document.execCommand("copy");
      document.body.removeChild(area);
      if (ok) { resolve(); } else { reject(new Error("copy failed")); }
    });
  }

  function showCopyButtons(root) {
    Array.prototype.forEach.call(root.querySelectorAll("button[data-copy]"), function (button) {
      button.hidden = false;
    });
  }

  function copyOnClick(event) {
    var button = event.target instanceof Element ? event.target.closest("button[data-copy]") : null;
    if (!button) return;
    var label = button.getAttribute("data-label-text") || button.textContent;
    button.setAttribute("data-label-text", label);
    copyText(button.getAttribute("data-copy")).then(function () {
      button.textContent = "Copied";
      button.setAttribute("aria-live", "polite");
      window.setTimeout(function () { button.textContent = label; }, 2000);
    }, function () {
      button.textContent = "Press Ctrl+C";
    });
  }

  function switchInline(event) {
    var submitter = event.submitter;
    var form = event.target;
    if (event.defaultPrevented || !submitter || !submitter.hasAttribute("data-inline")) return;
    if (!window.fetch || !window.FormData) return;
    var row = submitter.closest("tr");
    if (!row || !row.id) return;
    event.preventDefault();
    var body = new FormData(form);
    submitter.disabled = true;
    fetch(submitter.formAction, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" }
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    }).then(function (html) {
      var holder = document.createElement("tbody");
      holder.innerHTML = html.trim();
      var fresh = holder.querySelector("tr");
      if (!fresh || fresh.id !== row.id) throw new Error("unexpected answer");
      row.replaceWith(fresh);
      showCopyButtons(fresh);
      labelTableCells();
      var status = document.getElementById("alias-status");
      if (status) status.textContent = fresh.getAttribute("data-message") || "";
      var again = fresh.querySelector("button[data-inline]");
      if (again) again.focus();
    }).catch(function () {
      // Let the browser post it the plain way: the server redirects back to this list.
      submitter.removeAttribute("data-inline");
      submitter.disabled = false;
      form.requestSubmit(submitter);
    });
  }

  function setUpSelectAll() {
    Array.prototype.forEach.call(document.querySelectorAll("input[data-select-all]"), function (box) {
      var name = box.getAttribute("data-select-all");
      box.hidden = false;
      box.addEventListener("change", function () {
        Array.prototype.forEach.call(document.querySelectorAll('input[type="checkbox"][name="' + name + '"]'), function (item) {
          item.checked = box.checked;
        });
      });
    });
  }

  function labelTableCells() {
    var tables = document.querySelectorAll(".table-wrap table");
    Array.prototype.forEach.call(tables, function (table) {
      var headings = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
        return th.textContent.trim();
      });
      if (!headings.length) return;
      Array.prototype.forEach.call(table.querySelectorAll("tbody tr"), function (row) {
        Array.prototype.forEach.call(row.children, function (cell, index) {
          if (!cell.hasAttribute("data-label") && headings[index]) cell.setAttribute("data-label", headings[index]);
        });
      });
      table.classList.add("table-stack");
    });
  }

  // A long form came back with errors: its summary takes the focus (autofocus may not).
  function focusErrorSummary() {
    var summary = document.querySelector(".error-summary");
    if (summary && document.activeElement !== summary) {
      summary.focus();
    }
  }

  function ready() {
    showCopyButtons(document);
    setUpSelectAll();
    labelTableCells();
    focusErrorSummary();
  }

  setTimeZoneCookie();
  document.documentElement.classList.add("js");
  document.addEventListener("submit", confirmBeforeSubmit);
  document.addEventListener("submit", switchInline);
  document.addEventListener("click", copyOnClick);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
