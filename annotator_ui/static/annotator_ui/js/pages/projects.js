// Projects page: the user's projects with their progress, and a form to create one.

import { api, h, pageConfig, toast } from "../dom.js";
import { paths } from "../endpoints.js";

const config = pageConfig();
const $ = (id) => document.getElementById(id);

async function load() {
  const list = $("projects");
  try {
    const projects = await api.list(paths.projects());
    list.setAttribute("aria-busy", "false");
    if (!projects.length) {
      list.replaceChildren(h("p", { class: "muted" }, "You are not a member of any project yet. Create one below."));
      $("new-project").open = true;
      return;
    }
    list.replaceChildren(
      ...projects.map((p) =>
        h(
          "a",
          { class: "project-card", href: `/projects/${p.id}/`, "data-project": p.id },
          h("h2", {}, p.name),
          h("p", { class: "muted" }, p.description || templateName(p.template)),
          h(
            "div",
            { class: "counts" },
            p.my_role ? h("span", { class: "badge" }, p.my_role) : null,
            p.case_count != null ? h("span", { class: "badge" }, `${p.case_count} cases`) : null,
            p.labeled_count != null ? h("span", { class: "badge labeled" }, `${p.labeled_count} labeled`) : null,
          ),
        ),
      ),
    );
  } catch (err) {
    list.replaceChildren(h("p", { class: "error" }, err.message));
  }
}

function templateName(slug) {
  return config.templates.find((t) => t.slug === slug)?.name ?? slug ?? "";
}

const select = $("project-template");
for (const t of config.templates) select.append(h("option", { value: t.slug }, t.name));

$("project-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  try {
    const p = await api.post(paths.projects(), {
      name: form.elements.name.value,
      description: form.elements.description.value,
      template: form.elements.template.value,
    });
    location.href = `/projects/${p.id}/`;
  } catch (err) {
    toast(err.message, { error: true, ms: 8000 });
  }
});

load();
