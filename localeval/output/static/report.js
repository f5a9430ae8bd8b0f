// Sorting and filtering of the report's per-row table (#rows). It reads only the DOM the server
// escaped and never turns data into HTML (textContent and dataset only), so it cannot reintroduce
// markup. Inlined in the page, whose Content-Security-Policy allows this exact text by its hash.
(function () {
  "use strict";
  var table = document.getElementById("rows");
  if (!table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var query = document.getElementById("filter-text");
  var status = document.getElementById("filter-status");
  var model = document.getElementById("filter-model");
  var shown = document.getElementById("shown");
  function apply() {
    var text = query.value.trim().toLowerCase();
    var count = 0;
    rows.forEach(function (row) {
      var keep = (!text || row.textContent.toLowerCase().indexOf(text) !== -1) &&
        (!status.value || row.dataset.status === status.value) &&
        (!model || !model.value || row.dataset.model === model.value);
      row.hidden = !keep;
      if (keep) { count += 1; }
    });
    shown.textContent = count + " of " + rows.length + " rows";
  }
  function sortBy(th) {
    var index = th.cellIndex;
    var numeric = th.dataset.kind === "num";
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) {
      cell.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    rows.sort(function (a, b) {
      var x = a.cells[index].dataset.v, y = b.cells[index].dataset.v;
      if (x === y) { return 0; }
      if (x === "") { return 1; }  // blanks last, either way
      if (y === "") { return -1; }
      return dir * (numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y));
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    th.querySelector("button").addEventListener("click", function () { sortBy(th); });
  });
  [query, status, model].forEach(function (control) {
    if (control) {
      control.addEventListener("input", apply);
      control.addEventListener("change", apply);
    }
  });
  apply();
})();
