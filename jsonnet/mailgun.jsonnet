// Mailgun: send courier emails through the Mailgun Messages API.
//
//   Endpoint:     POST https://api.mailgun.net/v3/<your-domain>/messages
//                 (EU region: https://api.eu.mailgun.net/v3/<your-domain>/messages)
//   Content-Type: application/x-www-form-urlencoded (set it in the channel's headers;
//                 the courier turns this flat object of strings into a form body)
//   Auth:         auth: { type: basic_auth, config: { user: api, password: <Mailgun API key> } }
//
// Edit `from` below: it must be an address on your verified Mailgun sending domain.
local from = 'Example <no-reply@mg.example.com>';

function(ctx)
  // HTMLBody is omitted when the message has no HTML part; also tolerate null or ''.
  local html = std.get(ctx, 'HTMLBody', null);
  {
    from: from,
    to: ctx.Recipient,
    subject: ctx.Subject,
    text: ctx.Body,
    [if html != null && html != '' then 'html']: html,
    // Tags show up in Mailgun's analytics; `v:` variables are attached to webhooks and logs.
    'o:tag': ctx.TemplateType,
    'v:template_type': ctx.TemplateType,
  }
