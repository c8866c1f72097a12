// Slack: post a notice about each courier message to an ops channel through an
// incoming webhook. Meant for monitoring and test environments: it shows one-time
// codes in clear text, so never point it at a channel users or outsiders can read.
//
//   Endpoint:     POST https://hooks.slack.com/services/<T…>/<B…>/<secret>  (the webhook URL)
//   Content-Type: application/json (the default)
//   Auth:         none (the secret is part of the webhook URL; leave `auth` out)
//
// Edit `env` below to tell environments apart in the channel.
local env = 'staging';

// Slack mrkdwn needs &, < and > escaped.
local esc(s) = std.strReplace(std.strReplace(std.strReplace(s, '&', '&amp;'), '<', '&lt;'), '>', '&gt;');

function(ctx)
  local data = std.get(ctx, 'TemplateData', {});
  local codeFields = ['RecoveryCode', 'VerificationCode', 'LoginCode', 'RegistrationCode'];
  local codes = [data[f] for f in codeFields if f in data];
  local subject = std.get(ctx, 'Subject', '');
  local lines = [
    std.format('*%s* message `%s` to %s', [std.get(ctx, 'MessageType', 'email'), ctx.TemplateType, esc(ctx.Recipient)]),
  ] + (if subject != '' then ['*Subject:* ' + esc(subject)] else [])
    + (if std.length(codes) > 0 then ['*Code:* `' + esc(codes[0]) + '`'] else []);
  {
    text: esc(std.format('[%s] courier %s to %s', [env, ctx.TemplateType, ctx.Recipient])),
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: std.join('\n', lines) } },
      { type: 'context', elements: [{ type: 'mrkdwn', text: 'environment: ' + env }] },
    ],
  }
