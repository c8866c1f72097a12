// Postmark: send courier emails through the Postmark Email API.
//
//   Endpoint:     POST https://api.postmarkapp.com/email
//   Content-Type: application/json (the default; Postmark also wants `Accept: application/json`)
//   Auth:         auth: { type: api_key, config: { name: X-Postmark-Server-Token, value: <server API token>, in: header } }
//
// Edit `from` below: it must be a confirmed Sender Signature or on a verified domain.
// Edit `stream` if you send transactional mail through a stream other than "outbound".
local from = 'Example <no-reply@example.com>';
local stream = 'outbound';

function(ctx)
  // HTMLBody is omitted when the message has no HTML part; also tolerate null or ''.
  local html = std.get(ctx, 'HTMLBody', null);
  {
    From: from,
    To: ctx.Recipient,
    Subject: ctx.Subject,
    TextBody: ctx.Body,
    [if html != null && html != '' then 'HtmlBody']: html,
    Tag: ctx.TemplateType,
    MessageStream: stream,
    Metadata: { template_type: ctx.TemplateType },
  }
