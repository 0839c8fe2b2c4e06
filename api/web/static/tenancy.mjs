// Progressive enhancement only: every page works without this script.
import { initAll } from "/frontend/govuk-frontend.min.js";

initAll();

// While a tenancy is being set up, fetch its status page again now and then and swap in the
// new status, announcing a change of state to screen readers. Without JavaScript the page
// offers a link to refresh instead (an automatic reload would take the page from its reader).
const status = document.getElementById("tenancy-status");
const announcer = document.getElementById("status-announcer");

async function refresh() {
  const seconds = Number(status?.dataset.refresh);
  if (!status || !seconds) return;
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  try {
    const answer = await fetch(window.location.href, {
      headers: { Accept: "text/html" },
      credentials: "same-origin",
    });
    if (answer.ok) {
      const page = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = page.getElementById("tenancy-status");
      const changed =
        fresh &&
        (fresh.innerHTML !== status.innerHTML || fresh.dataset.state !== status.dataset.state);
      if (changed) {
        const before = status.dataset.state;
        status.innerHTML = fresh.innerHTML;
        status.dataset.state = fresh.dataset.state;
        if (fresh.dataset.refresh) status.dataset.refresh = fresh.dataset.refresh;
        else delete status.dataset.refresh;
        initAll({ scope: status });
        if (announcer && before !== fresh.dataset.state) {
          const tag = status.querySelector(".govuk-tag");
          announcer.textContent = `Status: ${tag ? tag.textContent.trim() : fresh.dataset.state}`;
        }
      }
    }
  } catch {
    // A missed check is retried at the next interval.
  }
  refresh();
}

refresh();
