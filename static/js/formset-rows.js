// Handover note: "Add another topic/work item" adds an empty row in place, without sending the
// form. Without scripts the "Save and add another" buttons do the same with a round trip.
(function () {
  "use strict";

  function addRow(button) {
    var prefix = button.getAttribute("data-formset");
    var template = document.getElementById(prefix + "-empty");
    var total = document.getElementById("id_" + prefix + "-TOTAL_FORMS");
    var max = document.getElementById("id_" + prefix + "-MAX_NUM_FORMS");
    if (!template || !total) {
      return;
    }
    var index = parseInt(total.value, 10);
    if (max && index >= parseInt(max.value, 10)) {
      button.disabled = true;
      return;
    }
    var holder = document.createElement("div");
    // The template is the formset's empty form as the server rendered it; only the index changes.
    holder.innerHTML = template.innerHTML.replace(/__prefix__/g, String(index));
    var row = holder.firstElementChild;
    button.closest(".formset-add").before(row);
    total.value = String(index + 1);
    var first = row.querySelector("input:not([type=hidden]), textarea, select");
    if (first) {
      first.focus();
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-formset]");
    if (button) {
      event.preventDefault();
      addRow(button);
    }
  });
})();
