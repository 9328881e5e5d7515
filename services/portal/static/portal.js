// Progressive enhancement only: every page works without this file.
// Copy buttons: shown only when the clipboard API exists; they copy the value of the named input.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    if (!navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var input = document.getElementById(button.getAttribute("data-copy"));
      if (!input) return;
      navigator.clipboard.writeText(input.value).then(function () {
        button.textContent = button.getAttribute("data-copied");
      });
    });
  });
  var summary = document.getElementById("error-summary");
  if (summary) summary.focus();
});
