// Draws every chart of a margin dashboard page or report. Each chart is a <div id=...> plus a
// <script type="application/json" data-chart="that id"> holding its plotly figure: data blocks are never
// executed, so pages need no inline script (the dashboard's Content-Security-Policy allows none) and the
// figures cannot break out of their element (the server escapes "<", ">" and "&" inside the JSON).
"use strict";
(function () {
  function draw() {
    var blocks = document.querySelectorAll('script[type="application/json"][data-chart]');
    for (var i = 0; i < blocks.length; i++) {
      var block = blocks[i];
      var target = document.getElementById(block.getAttribute("data-chart"));
      if (!target) {
        continue;
      }
      if (typeof Plotly === "undefined") {
        target.textContent = "The chart library (plotly.min.js) did not load, so this chart cannot be drawn.";
        target.className += " chart-error";
        continue;
      }
      var figure = JSON.parse(block.textContent);
      (function (element) {
        Plotly.newPlot(element, figure.data, figure.layout, figure.config).then(function () {
          element.setAttribute("data-rendered", "true");
        });
      })(target);
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
