// Sorting and filtering of the report's tables. The page reads fully without this script; it only
// reorders and hides rows that are already there, and never turns data into markup.
"use strict";
(function () {
  // A cell's sort key: its data-sort attribute when present (numbers), else its text. Empty = missing.
  function sortKey(row, column) {
    const cell = row.cells[column];
    if (!cell) return null;
    const raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    if (raw === "" || raw === "—") return null;
    const number = Number(raw);
    return Number.isFinite(number) ? number : raw.toLowerCase();
  }

  // Missing values always sort last, whatever the direction; numbers before text.
  function compare(a, b, direction) {
    if (a === null || b === null) return a === b ? 0 : (a === null ? 1 : -1);
    if (typeof a !== typeof b) return typeof a === "number" ? -1 : 1;
    if (typeof a === "number") return (a - b) * direction;
    return a.localeCompare(b, undefined, { numeric: true }) * direction;
  }

  function sortBy(table, column, header) {
    const direction = header.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    // Array.prototype.sort is stable, so equal keys keep their previous order.
    rows.sort(function (a, b) { return compare(sortKey(a, column), sortKey(b, column), direction); });
    for (const other of table.tHead.rows[0].cells) other.removeAttribute("aria-sort");
    header.setAttribute("aria-sort", direction === 1 ? "ascending" : "descending");
    for (const row of rows) body.appendChild(row);
  }

  for (const table of document.querySelectorAll("table.sortable")) {
    if (!table.tHead || !table.tBodies.length) continue;
    Array.from(table.tHead.rows[0].cells).forEach(function (header, column) {
      header.classList.add("sort-key");
      header.tabIndex = 0;
      header.title = (header.title ? header.title + " — " : "") + "click to sort";
      header.addEventListener("click", function () { sortBy(table, column, header); });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sortBy(table, column, header);
        }
      });
    });
  }

  // Every whitespace-separated term must occur in the row's text.
  for (const input of document.querySelectorAll("input.table-filter")) {
    const table = document.getElementById(input.dataset.table);
    if (!table) continue;
    input.hidden = false;
    input.addEventListener("input", function () {
      const terms = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      for (const row of table.tBodies[0].rows) {
        const text = row.textContent.toLowerCase();
        row.hidden = !terms.every(function (term) { return text.includes(term); });
      }
    });
  }
})();
