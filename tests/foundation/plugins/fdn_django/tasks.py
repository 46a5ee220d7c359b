from celery import shared_task


@shared_task(name="fdn_django.make_group")
def make_group(name):
    from django.conf import settings
    from django.contrib.auth.models import Group

    Group.objects.create(name=name)
    return {"groups": Group.objects.count(), "marker": settings.FDN_MARKER}
