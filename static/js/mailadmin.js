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

  function setUpCopyButtons() {
    var buttons = document.querySelectorAll("button[data-copy]");
    Array.prototype.forEach.call(buttons, function (button) {
      var label = button.textContent;
      button.hidden = false;
      button.addEventListener("click", function () {
        copyText(button.getAttribute("data-copy")).then(function () {
          button.textContent = "Copied";
          button.setAttribute("aria-live", "polite");
          window.setTimeout(function () { button.textContent = label; }, 2000);
        }, function () {
          button.textContent = "Press Ctrl+C";
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
    setUpCopyButtons();
    labelTableCells();
    focusErrorSummary();
  }

  setTimeZoneCookie();
  document.documentElement.classList.add("js");
  document.addEventListener("submit", confirmBeforeSubmit);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
