// Site-wide behaviour (CSP: loaded from static/, no inline script):
// - the navigation toggle on narrow screens (without JavaScript, the "Menu" link opens the
//   navigation through its #sidenav :target instead);
// - the header's Approvals and Alerts counts, reloaded when an htmx response says something
//   changed (the HX-Trigger event holdfast:changed, sent by portal.middleware).
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  ready(function () {
    var nav = document.getElementById("sidenav");
    var button = document.querySelector(".nav-toggle-button");
    var link = document.querySelector(".nav-toggle-link");
    if (nav && button && link) {
      document.documentElement.classList.add("js");
      button.hidden = false;
      link.hidden = true;
      button.addEventListener("click", function () {
        var open = button.getAttribute("aria-expanded") !== "true";
        button.setAttribute("aria-expanded", open ? "true" : "false");
        nav.classList.toggle("open", open);
        if (open) {
          var first = nav.querySelector("a");
          if (first) first.focus();
        }
      });
      nav.addEventListener("keydown", function (event) {
        if (event.key === "Escape" && nav.classList.contains("open")) {
          button.setAttribute("aria-expanded", "false");
          nav.classList.remove("open");
          button.focus();
        }
      });
      var close = nav.querySelector(".nav-close");
      if (close) {
        close.addEventListener("click", function (event) {
          event.preventDefault();
          button.setAttribute("aria-expanded", "false");
          nav.classList.remove("open");
          button.focus();
        });
      }
    }

    // Vault creation: the "Other region" field shows once "Other" is chosen (without
    // JavaScript it is always there, and only read when "Other" is chosen).
    var region = document.getElementById("id_region");
    var other = document.getElementById("id_region_other");
    if (region && other && other.closest(".field")) {
      var field = other.closest(".field");
      var sync = function () {
        field.hidden = region.value !== "other" && !other.value;
      };
      region.addEventListener("change", function () {
        sync();
        if (region.value === "other") other.focus();
      });
      sync();
    }

    document.body.addEventListener("holdfast:changed", function () {
      var counts = document.getElementById("header-counts");
      if (!counts || !window.htmx) return;
      window.htmx.ajax("GET", counts.getAttribute("data-refresh-url"), {
        target: "#header-counts",
        swap: "outerHTML"
      });
    });
  });
})();
