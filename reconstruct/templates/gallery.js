/* The left and right arrow keys go to the previous and next page (the page's <link rel="prev|next">). A click on
   a picture shows it at full size over the page (a layout keeps its boxes); a click or Escape closes it. */
(function () {
  "use strict";
  var viewer = null;

  function close() {
    if (viewer) {
      viewer.parentNode.removeChild(viewer);
      viewer = null;
    }
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) {
      return;
    }
    var target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) {
      return;
    }
    if (event.key === "Escape") {
      close();
      return;
    }
    var rel = event.key === "ArrowLeft" ? "prev" : event.key === "ArrowRight" ? "next" : null;
    var link = rel ? document.querySelector('link[rel="' + rel + '"]') : null;
    if (link) {
      event.preventDefault();
      location.href = link.getAttribute("href");
    }
  });

  document.addEventListener("click", function (event) {
    if (viewer) {
      close();
      event.preventDefault();
      return;
    }
    var link = event.target.closest ? event.target.closest("a.zoom") : null;
    if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) {
      return;
    }
    event.preventDefault();
    var copy = link.cloneNode(true);
    copy.removeAttribute("href");
    copy.className = "";
    var image = copy.querySelector("img");
    image.removeAttribute("width");
    image.removeAttribute("height");
    image.removeAttribute("loading");
    image.src = link.getAttribute("href");
    viewer = document.createElement("div");
    viewer.className = "viewer";
    viewer.appendChild(copy);
    document.body.appendChild(viewer);
  });
})();
