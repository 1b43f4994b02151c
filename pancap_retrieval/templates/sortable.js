/* Tables with class "sortable": a click on a column's button sorts the rows by that column, numbers as numbers,
   empty cells and "–" last in both directions. The first click sorts in the button's data-first direction, the
   next one reverses it. "#sort=TABLE.COLUMN.asc|desc" in the address sorts a table when the page opens, so a
   sorted view can be linked to. */
(function () {
  "use strict";

  function key(cell) {
    var text = cell ? (cell.getAttribute("data-sort") || cell.textContent).trim() : "";
    if (text === "" || text === "\u2013") {
      return null;
    }
    var number = parseFloat(text);
    return isNaN(number) ? text.toLowerCase() : number;
  }

  function compare(a, b) {
    if (typeof a === typeof b) {
      return a < b ? -1 : a > b ? 1 : 0;
    }
    return typeof a === "number" ? -1 : 1;
  }

  function sortTable(table, column, direction) {
    var body = table.tBodies[0];
    var rows = Array.prototype.map.call(body.rows, function (row, index) {
      return [key(row.cells[column]), index, row];
    });
    rows.sort(function (a, b) {
      if (a[0] === null || b[0] === null) {
        return (a[0] === null) - (b[0] === null) || a[1] - b[1];
      }
      var order = compare(a[0], b[0]);
      return (direction === "desc" ? -order : order) || a[1] - b[1];
    });
    var fragment = document.createDocumentFragment();
    rows.forEach(function (entry) {
      fragment.appendChild(entry[2]);
    });
    body.appendChild(fragment);
    Array.prototype.forEach.call(table.querySelectorAll("th button[data-column]"), function (button) {
      var th = button.parentNode;
      if (+button.getAttribute("data-column") === column) {
        th.setAttribute("aria-sort", direction === "asc" ? "ascending" : "descending");
      } else {
        th.removeAttribute("aria-sort");
      }
    });
    table.setAttribute("data-sorted", column + "." + direction);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("table.sortable th button[data-column]") : null;
    if (!button) {
      return;
    }
    var table = button.closest("table");
    var column = +button.getAttribute("data-column");
    var first = button.getAttribute("data-first") === "desc" ? "desc" : "asc";
    var again = table.getAttribute("data-sorted") === column + "." + first;
    var direction = again ? (first === "asc" ? "desc" : "asc") : first;
    sortTable(table, column, direction);
    if (table.id) {
      location.replace("#sort=" + table.id + "." + column + "." + direction);
    }
  });

  function sortFromAddress() {
    var match = /^#sort=([\w-]+)\.(\d+)\.(asc|desc)$/.exec(location.hash);
    var table = match ? document.getElementById(match[1]) : null;
    if (table && table.classList.contains("sortable") && table.getAttribute("data-sorted") !== match[2] + "." + match[3]) {
      sortTable(table, +match[2], match[3]);
    }
  }

  window.addEventListener("hashchange", sortFromAddress);

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", sortFromAddress);
  } else {
    sortFromAddress();
  }
})();
