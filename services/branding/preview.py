"""A page that shows a theme as a resident would see it: header with logo and name, a heading,
body text, a link, a button and the footer. Rendered from the published design tokens and
styled only by the published CSS's custom properties, so it proves what a service will get.

Every value a council supplied is HTML-escaped; footer links are http(s) URLs by contract.
"""

from __future__ import annotations

from html import escape
from typing import Any

PAGE_STYLE = """
  .skip-link { position: absolute; left: -9999px; top: 0; padding: 10px 15px; }
  .skip-link:focus { left: 0; z-index: 1; }
  body { margin: 0; font-family: Arial, sans-serif; font-size: 19px; line-height: 1.4;
         color: var(--tenancy-colour-text); background: var(--tenancy-colour-background); }
  .header { background: var(--tenancy-colour-primary); color: var(--tenancy-colour-on-primary);
            padding: 12px 30px; display: flex; align-items: center; gap: 16px; }
  .header img { max-height: 60px; width: auto; }
  .header .name { font-size: 24px; font-weight: bold; }
  .header .welsh { display: block; font-size: 19px; font-weight: normal; }
  main { max-width: 960px; margin: 0 auto; padding: 30px; }
  a { color: var(--tenancy-colour-link); }
  a:focus, .button:focus { outline: 3px solid transparent; background: var(--tenancy-colour-focus);
            color: var(--tenancy-colour-focus-text); box-shadow: 0 -2px var(--tenancy-colour-focus),
            0 4px var(--tenancy-colour-focus-text); }
  .button { display: inline-block; border: 0; padding: 8px 10px; font-size: 19px; cursor: pointer;
            background: var(--tenancy-colour-primary); color: var(--tenancy-colour-on-primary);
            box-shadow: 0 2px 0 var(--tenancy-colour-text); }
  footer { border-top: 1px solid var(--tenancy-colour-text); padding: 20px 30px; }
  footer ul { list-style: none; padding: 0; display: flex; gap: 20px; flex-wrap: wrap; }
"""


def render_preview(
    tokens: dict[str, Any], *, css_href: str, logo_href: str | None, service_name: str
) -> str:
    names = tokens["name"]
    name = escape(names["en"])
    welsh = names.get("cy")
    logo = tokens.get("logo")
    header = []
    if logo is not None and logo_href is not None:
        header.append(f'<img src="{escape(logo_href)}" alt="{escape(logo["alt"] or "")}">')
    title = f'<span class="name">{name}'
    if welsh:
        title += f' <span class="welsh" lang="cy">{escape(welsh)}</span>'
    header.append(title + "</span>")
    footer = [
        f'<li><a href="{escape(link["url"])}">{escape(link["text"])}</a></li>'
        for link in tokens.get("footer_links") or []
    ]
    contact = tokens.get("contact") or {}
    if contact.get("email"):
        email = escape(contact["email"])
        footer.append(f'<li><a href="mailto:{email}">{email}</a></li>')
    if contact.get("phone"):
        footer.append(f"<li>{escape(contact['phone'])}</li>")
    version = tokens["tenancy"]["version"]
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(service_name)}: {name} (theme version {version})</title>
<link rel="stylesheet" href="{escape(css_href)}">
<style>{PAGE_STYLE}</style>
</head>
<body>
<a href="#main-content" class="skip-link" data-testid="skip-link">Skip to main content</a>
<header class="header" data-testid="header">{"".join(header)}</header>
<main id="main-content" tabindex="-1">
<h1>{escape(service_name)}</h1>
<p data-testid="body-text">This is how residents of {name} will see this service. Body text
uses the theme's text colour on its background colour.</p>
<p><a href="#information" data-testid="link">Read how this service uses your information</a></p>
<button class="button" type="button" data-testid="button">Start now</button>
<h2 id="information">How this service uses your information</h2>
<p>{name} keeps what you tell this service only to provide it to you.</p>
</main>
<footer><ul>{"".join(footer)}</ul></footer>
</body>
</html>
"""
