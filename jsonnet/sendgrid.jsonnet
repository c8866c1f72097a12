// SendGrid: send courier emails through the SendGrid v3 Mail Send API.
//
//   Endpoint:     POST https://api.sendgrid.com/v3/mail/send   (answers 202 Accepted on success)
//   Content-Type: application/json (the default)
//   Auth:         auth: { type: api_key, config: { name: Authorization, value: "Bearer <SendGrid API key>", in: header } }
//
// Edit `from_email` / `from_name` below: the sender must be verified in SendGrid
// (Single Sender Verification or an authenticated domain).
local from_email = 'no-reply@example.com';
local from_name = 'Example';

function(ctx)
  // HTMLBody is omitted when the message has no HTML part; also tolerate null or ''.
  local html = std.get(ctx, 'HTMLBody', null);
  {
    personalizations: [{ to: [{ email: ctx.Recipient }] }],
    from: { email: from_email, name: from_name },
    subject: ctx.Subject,
    // SendGrid requires text/plain before text/html.
    content: [{ type: 'text/plain', value: ctx.Body }] +
             (if html != null && html != '' then [{ type: 'text/html', value: html }] else []),
    categories: [ctx.TemplateType],
    custom_args: { template_type: ctx.TemplateType },
  }
