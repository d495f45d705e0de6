// The crontab field's help on django-celery-beat's periodic task form says the
// chosen schedule in words ("At 04:00 on Monday"). Upstream does this inline;
// here it is a static file, so the admin keeps the portal's strict CSP.
(function () {
  "use strict";
  var script = document.getElementById("periodic-task-overrides");
  var data = document.getElementById("readable-crontabs");
  if (!script || !data) { return; }
  var readable = JSON.parse(data.textContent);
  var original = script.dataset.crontabHelp || "";
  var $ = window.django && window.django.jQuery;
  if (!$) { return; }
  $(function () {
    var help = $(".field-crontab .help");
    function update() {
      var words = readable[$("#id_crontab").val()];
      help.text(original);
      if (words) { help.append($("<br>")).append(document.createTextNode("Translation: " + words)); }
    }
    $(".field-crontab_translation").hide();
    $(".field-crontab").on("change", update);
    update();
  });
}());
