import Mustache

/// The dashboard's Mustache templates, stylesheet and refresh script, compiled into the binary so
/// that the daemon needs no files beside it. `{{x}}` is HTML-escaped; `{{{x}}}` is used only for
/// HTML the dashboard rendered itself (a page body, the ledger's SVG chart).
enum DashboardTemplates {
    static func library() -> MustacheLibrary {
        var library = MustacheLibrary()
        for (name, text) in templates {
            do {
                try library.register(text, named: name)
            } catch {
                preconditionFailure("dashboard template \(name) does not parse: \(error)")
            }
        }
        return library
    }

    static let templates: [(String, String)] = [
        ("layout", layout), ("login", login), ("message", message), ("runs", runs), ("run", run), ("privacy", privacy),
        ("segments", segments), ("clients", clients),
    ]

    static let head = """
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <link rel="stylesheet" href="/dashboard/static/style.css">
        <link rel="icon" href="data:,">
        """

    static let layout = """
        <!doctype html>
        <html lang="en">
        <head>
        \(head)
        <title>{{title}} · FedSeg coordinator</title>
        <script src="/dashboard/static/live.js" defer></script>
        </head>
        <body>
        <header>
        <strong class="brand">FedSeg coordinator</strong>
        <nav>{{#navigation}}<a href="{{path}}"{{#current}} aria-current="page"{{/current}}>{{title}}</a>{{/navigation}}</nav>
        {{#signedIn}}<form method="post" action="/dashboard/logout" class="signout"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">Sign out</button></form>{{/signedIn}}
        </header>
        <main>
        <h1>{{title}}</h1>
        {{{body}}}
        </main>
        <footer>Coordinator signing key <code>{{signingKey}}</code> · page generated {{generated}}</footer>
        </body>
        </html>
        """

    static let login = """
        <!doctype html>
        <html lang="en">
        <head>
        \(head)
        <title>Sign in · FedSeg coordinator</title>
        </head>
        <body class="login">
        <main>
        <h1>FedSeg coordinator</h1>
        <p>Sign in with the admin token: the contents of <code>admin.token</code> in the coordinator's state directory.</p>
        {{#failed}}<p class="error" role="alert">{{message}}</p>{{/failed}}
        <form method="post" action="/dashboard/login">
        <label for="token">Admin token</label>
        <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
        <button type="submit">Sign in</button>
        </form>
        </main>
        </body>
        </html>
        """

    static let message = """
        <section class="message"><h2>{{title}}</h2><p>{{text}}</p></section>
        """

    static let runs = """
        <section id="live" data-live="/dashboard/live/run" aria-live="polite">{{{live}}}</section>
        <h2>All runs</h2>
        {{#hasRuns}}
        <table>
        <thead><tr><th>Run</th><th>Status</th><th>Phase</th><th>Committed rounds</th><th>Started</th></tr></thead>
        <tbody>
        {{#runs}}<tr><td><code>{{id}}</code></td><td><span class="status {{status}}">{{status}}</span></td><td>{{phase}}</td><td class="num">{{committedRounds}}</td><td>{{created}}</td></tr>
        {{/runs}}
        </tbody>
        </table>
        {{/hasRuns}}
        {{^hasRuns}}<p>No runs yet.</p>{{/hasRuns}}
        """

    static let run = """
        <h2>Run <code>{{id}}</code> <span class="status {{status}}">{{status}}</span></h2>
        <p class="note">{{reason}}</p>
        <dl class="facts">
        <dt>Phase</dt><dd>{{phase}}</dd>
        <dt>Privacy</dt><dd>{{mode}} noise; ε = {{epsilon}}, δ = {{delta}}; ε spent {{spent}}</dd>
        <dt>Embedder</dt><dd>{{embedder}}; k = {{k}}</dd>
        <dt>Progress</dt><dd>{{roundsLine}}</dd>
        <dt>Segments</dt><dd>{{segmentation}}</dd>
        </dl>
        {{#open}}
        <div class="round">
        <h3>Round {{id}} open ({{phase}})</h3>
        <p><progress value="{{participants}}" max="{{progressMax}}"></progress>
        {{participants}} of {{expected}} expected clients answered, {{declined}} declined; closes in {{secondsLeft}}.</p>
        {{#hasStage}}<p>Secure aggregation stage: <strong>{{stage}}</strong>{{#progress}} · {{key}} {{value}}{{/progress}}</p>{{/hasStage}}
        </div>
        {{/open}}
        {{#waiting}}<p>Waiting for the next round to open.</p>{{/waiting}}
        <p class="note">{{stale}}</p>
        {{#running}}<form method="post" action="/dashboard/runs/stop"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit" class="danger">Stop this run</button></form>{{/running}}
        <h3>Rounds</h3>
        <table>
        <thead><tr><th>Round</th><th>Phase</th><th>Status</th><th>Participants</th><th>Declined</th><th>Expected</th><th>Centroid shift</th></tr></thead>
        <tbody>
        {{#rounds}}<tr><td class="num">{{id}}</td><td>{{phase}}</td><td><span class="status {{status}}">{{status}}</span></td><td class="num">{{participants}}</td><td class="num">{{declined}}</td><td class="num">{{expected}}</td><td class="num">{{shift}}</td></tr>
        {{/rounds}}
        </tbody>
        </table>
        """

    static let privacy = """
        {{#verified}}<p class="ok">Ledger verified: {{records}} records; the hash chain, the budget history and every ε recomputed from the recorded mechanisms agree.</p>{{/verified}}
        {{^verified}}<p class="error" role="alert">Ledger VERIFICATION FAILED ({{records}} records). Restore the state directory from a backup; <code>fedseg privacy audit --state-dir</code> lists every problem.</p>
        <ul>{{#problems}}<li>{{.}}</li>{{/problems}}</ul>{{/verified}}
        <table>
        <thead><tr><th>Population</th><th>Releases</th><th>ε spent</th><th>ε budget</th><th>ε left</th><th>δ</th></tr></thead>
        <tbody>
        {{#populations}}<tr><td><code>{{name}}</code></td><td class="num">{{releases}}</td><td class="num">{{spent}}</td><td class="num">{{budget}}</td><td class="num">{{left}}</td><td class="num">{{delta}}</td></tr>
        {{/populations}}
        </tbody>
        </table>
        <p class="note">Why the same releases show two ε figures: each population is accounted at its own δ. A run's population
        (<code>run:…</code>) uses the run's δ, <code>all-users</code> the coordinator's lifetime δ, and ε depends on δ.
        Each is checked against its own budget before anything is released.</p>
        <figure>{{{chart}}}<figcaption>ε after each release, in ledger order; dashed lines are the budgets.</figcaption></figure>
        <h2>Budget changes</h2>
        <table>
        <thead><tr><th>#</th><th>Population</th><th>ε</th><th>δ</th><th>When</th><th>Reason</th></tr></thead>
        <tbody>
        {{#changes}}<tr><td class="num">{{sequence}}</td><td><code>{{population}}</code></td><td class="num">{{epsilon}}</td><td class="num">{{delta}}</td><td>{{at}}</td><td>{{reason}}</td></tr>
        {{/changes}}
        </tbody>
        </table>
        """

    static let segments = """
        <p class="note">{{note}}</p>
        <p>Run <code>{{runID}}</code> ({{status}}). Sizes are released counts with differential-privacy noise: approximate, and never shown below zero.
        Spread is the mean squared distance of a member to its centroid, derived from the released centroid (1 − ‖c‖²); it costs no ε.</p>
        {{#hasSegments}}
        <table>
        <thead><tr><th>#</th><th>Label</th><th>Size</th><th>Spread</th><th>Top items</th><th>Nearest seed phrases</th></tr></thead>
        <tbody>
        {{#segments}}<tr><td class="num">{{id}}</td><td>{{label}}</td><td>{{size}}</td><td class="num">{{spread}}</td><td>{{topItems}}</td><td>{{phrases}}</td></tr>
        {{/segments}}
        </tbody>
        </table>
        {{/hasSegments}}
        {{^hasSegments}}<p>This run has no segments yet.</p>{{/hasSegments}}
        """

    static let clients = """
        <dl class="facts">
        <dt>Enrolled</dt><dd>{{total}}</dd><dt>Active</dt><dd>{{active}}</dd><dt>Revoked</dt><dd>{{revoked}}</dd><dt>Stale</dt><dd>{{stale}} (not seen recently; rounds do not wait for them)</dd>
        </dl>
        <h2>Rejected updates by reason</h2>
        <p class="note">Since this coordinator process started; <code>/metrics</code> has the same counts as <code>fedseg_updates_rejected_total</code>.</p>
        {{#hasRejections}}
        <table>
        <thead><tr><th>Reason</th><th>Count</th></tr></thead>
        <tbody>{{#rejections}}<tr><td><code>{{key}}</code></td><td class="num">{{value}}</td></tr>{{/rejections}}</tbody>
        </table>
        {{/hasRejections}}
        {{^hasRejections}}<p>None.</p>{{/hasRejections}}
        <h2>Clients</h2>
        {{#truncated}}<p class="note">The first {{shown}} of {{total}}; <code>fedseg clients list --json</code> lists all.</p>{{/truncated}}
        <table>
        <thead><tr><th>Client</th><th>Status</th><th>Enrolled</th><th>Last seen</th><th>Stale</th></tr></thead>
        <tbody>
        {{#rows}}<tr><td><code>{{id}}</code></td><td><span class="status {{status}}">{{status}}</span></td><td>{{enrolled}}</td><td>{{lastSeen}}</td><td>{{#stale}}stale{{/stale}}</td></tr>
        {{/rows}}
        </tbody>
        </table>
        """

    static let style = """
        :root { color-scheme: light; --ink: #1d2430; --muted: #5b6575; --line: #d9dee7; --accent: #1f5fbf; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: #f6f7f9; }
        header { display: flex; gap: 1.5rem; align-items: center; padding: .6rem 1.5rem; background: #14213d; color: white; }
        header nav a { color: #cfd8ea; text-decoration: none; margin-right: 1rem; }
        header nav a[aria-current=page] { color: white; border-bottom: 2px solid #7fb0ff; }
        header .signout { margin-left: auto; }
        main { padding: 1rem 1.5rem 2rem; max-width: 1200px; }
        h1 { font-size: 1.5rem; margin: .5rem 0 1rem; }
        h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; }
        h3 { font-size: 1rem; margin: 1rem 0 .4rem; }
        table { border-collapse: collapse; background: white; width: 100%; margin: .3rem 0 1rem; }
        th, td { border-bottom: 1px solid var(--line); padding: .3rem .6rem; text-align: left; vertical-align: top; }
        th { background: #eef1f6; font-weight: 600; }
        td.num { text-align: right; font-variant-numeric: tabular-nums; }
        code { font-size: .9em; word-break: break-all; }
        dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; background: white; padding: .6rem 1rem; border: 1px solid var(--line); }
        dl.facts dt { color: var(--muted); }
        dl.facts dd { margin: 0; }
        .note { color: var(--muted); }
        .ok { color: #17663a; font-weight: 600; }
        .error { color: #a4161a; font-weight: 600; }
        .status { padding: 0 .4rem; border-radius: .6rem; background: #e5e8ee; }
        .status.running, .status.collecting, .status.active { background: #d7e8ff; }
        .status.completed, .status.committed { background: #d6f2df; }
        .status.failed, .status.abandoned, .status.revoked, .status.stopped { background: #fbe0e0; }
        .round { background: white; border: 1px solid var(--line); padding: .2rem 1rem; margin: .6rem 0; }
        progress { width: 16rem; vertical-align: middle; }
        button { font: inherit; padding: .3rem .9rem; border: 1px solid #8895a9; border-radius: .3rem; background: white; cursor: pointer; }
        button.danger { border-color: #a4161a; color: #a4161a; }
        figure { margin: 1rem 0; background: white; border: 1px solid var(--line); padding: .5rem; }
        figure svg { max-width: 100%; height: auto; }
        figcaption { color: var(--muted); }
        footer { padding: 1rem 1.5rem; color: var(--muted); font-size: .85rem; }
        body.login main { max-width: 28rem; margin: 4rem auto; background: white; border: 1px solid var(--line); padding: 1.5rem 2rem; }
        body.login input { display: block; width: 100%; margin: .3rem 0 1rem; padding: .4rem; font: inherit; }
        """

    /// Refreshes every `data-live` section from its URL every two seconds, without reloading the
    /// page; a signed-out browser is sent back to the sign-in form.
    static let liveScript = """
        "use strict";
        for (const section of document.querySelectorAll("[data-live]")) {
          const refresh = async () => {
            try {
              const response = await fetch(section.dataset.live, { credentials: "same-origin", headers: { Accept: "text/html" } });
              if (response.redirected || response.status === 401) { window.location.assign("/dashboard/login"); return; }
              if (response.ok) {
                section.innerHTML = await response.text();
                section.dataset.updated = new Date().toISOString();
              }
            } catch (error) {
              // The coordinator is restarting or unreachable: try again at the next tick.
            }
            window.setTimeout(refresh, 2000);
          };
          window.setTimeout(refresh, 2000);
        }
        """
}
